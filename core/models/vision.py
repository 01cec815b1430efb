"""Vision-language models: which checkpoints read pictures, their processor, and a codec that renders prompts with
pictures in them.

A local directory of an image-text-to-text model (Qwen2-VL / Qwen2.5-VL, SmolVLM / Idefics3, LLaVA, GLM-4V in its
transformers form) loads with ``AutoModelForImageTextToText`` and ``AutoProcessor``, never remote code. Its
processor renders the chat template and turns each picture into the model's image tokens and pixel tensors:
``VisionCodec.prompt_inputs`` gives what ``generate`` takes; its ``prompt_ids`` (and so the prompt budget) count
the image tokens too. A user message's pictures (``"images"``, ``core.images.ImageInput``) become content parts
``[{"type": "image"}, ..., {"type": "text", "text": ...}]``, the form these templates read; every other message's
text becomes one text part.

transformers 5 builds the video half of some processors (Qwen2-VL, SmolVLM, GLM-4V) only with torchvision; without
it the processor is built for pictures alone (``_image_only``), from the same files.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from core.errors import InputError, ModelError


def is_vision_config(raw: dict[str, Any]) -> bool:
    """True when ``config.json`` (as a dict) describes an image-text-to-text model transformers has natively."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return raw.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and "vision_config" in raw


FAMILIES = "Qwen2-VL, Qwen2.5-VL, SmolVLM, LLaVA, GLM-4V"
"""Vision-language families a local directory may hold, as error messages name them."""


def image_models_hint() -> str:
    """Which models take pictures, for a message refusing them on a text-only model: the remote profiles configured
    in inkstone.toml (the server decides), and the local vision-language families."""
    from core.models.registry import configured

    remote = ", ".join(sorted(configured()))
    local = f"a local {FAMILIES} model directory (--model PATH)"
    return f"{remote} (remote), or {local}" if remote else local


LANGUAGE_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "gate_up_proj")
"""The language model's linear layers in transformers' image-text-to-text models (GLM-4V fuses gate and up)."""


def language_lora_targets(model: Any = None, names: Any = None) -> str:
    """A PEFT ``target_modules`` regex for linear layers of the language model only (the vision tower and the
    projector keep their weights): ``names`` (default: every attention and MLP projection) under
    ``language_model`` (Qwen2-VL, LLaVA, GLM-4V) or ``text_model`` (SmolVLM, Idefics3)."""
    del model  # transformers 5 names the language part one of these two in every image-text-to-text model
    import re

    chosen = LANGUAGE_LINEAR if names in (None, "all-linear", ["all-linear"]) else tuple(names)
    return rf".*(language_model|text_model).*\.({'|'.join(re.escape(n) for n in chosen)})"


def is_vision_model(model: Any) -> bool:
    """True for a loaded image-text-to-text model (its config has a vision part)."""
    return getattr(getattr(model, "config", None), "vision_config", None) is not None


def load_processor(path: Path) -> Any:
    """The processor of the model in ``path`` (pictures alone when its video half needs torchvision); ModelError
    naming the file and the fix."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(str(path), trust_remote_code=False)
    except ImportError as exc:
        if "torchvision" not in str(exc).lower():
            raise ModelError(f"Could not load the processor in {path} ({exc}); install what it names.") from None
        return _image_only(path)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelError(
            f"Could not load the image processor in {path} ({type(exc).__name__}: {str(exc)[:300]}): check that "
            "preprocessor_config.json and the tokenizer files are complete, or re-download the model."
        ) from None


class NoVideo:
    """Stands in for a processor's video half where torchvision is missing: the defaults some processors read
    (SmolVLM's ``num_frames`` and ``fps``) and nothing else; chat messages carry no videos."""

    num_frames = None
    fps = None


def _image_only(path: Path) -> Any:
    """The processor class named in ``processor_config.json``, built from its tokenizer, image processor and chat
    template with no video processor (what needs torchvision)."""
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    config: dict[str, Any] = {}
    for name in ("processor_config.json", "preprocessor_config.json"):
        file = path / name
        if file.is_file():
            config = {**json.loads(file.read_text(encoding="utf-8")), **config}
    cls = getattr(transformers, str(config.get("processor_class")), None)
    if cls is None:
        raise ModelError(f"{path}: its processor needs torchvision and names no processor class Inkstone can build "
                         "without it: `pip install torchvision` (the build matching your torch).")

    class ImageOnly(cls):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and isinstance(argument, NoVideo):
                return NoVideo
            return super().check_argument_for_proper_class(argument_name, argument)

    template = path / "chat_template.jinja"
    chat_template = template.read_text(encoding="utf-8") if template.is_file() else None
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    options = {k: v for k, v in config.items() if k in ("patch_size", "vision_feature_select_strategy",
                                                         "num_additional_image_tokens", "image_seq_len")}
    ImageOnly.__name__ = cls.__name__
    return ImageOnly(image_processor=AutoImageProcessor.from_pretrained(str(path)), tokenizer=tokenizer,
                     video_processor=NoVideo(), chat_template=chat_template or tokenizer.chat_template, **options)


def as_parts(messages: list[dict[str, Any]], pictures: bool = False) -> tuple[list[dict[str, Any]], list[Any]]:
    """Messages in content-part form for a processor's template, and the pictures (``ImageInput``) in prompt order;
    with ``pictures`` each image part carries its decoded picture (``"image"``), as the processor loads it."""
    rendered, images = [], []
    for message in messages:
        found = message.get("images") or []
        parts: list[dict[str, Any]] = [{"type": "image", "image": i.pil()} if pictures else {"type": "image"}
                                       for i in found]
        content = message.get("content")
        if isinstance(content, str) and (content or not parts):
            parts.append({"type": "text", "text": content})
        rendered.append({**{k: v for k, v in message.items() if k not in ("images", "tools")}, "content": parts})
        images.extend(found)
    return rendered, images


def _tools(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The ``tools`` list a message hands the template (``core.tools.formats``), as ``HFChatCodec`` reads it."""
    return next((m["tools"] for m in messages if m.get("tools")), None)


class VisionCodec:
    """A processor's chat template, tokenizer and image processor behind the codec interface, plus
    ``prompt_inputs`` (ids and pixel tensors for ``generate``)."""

    images = True

    def __init__(self, processor: Any, generation_config: Any = None, source: str = "") -> None:
        from core.models.codec import HFChatCodec

        self.processor = processor
        self.tokenizer = processor.tokenizer
        if not getattr(processor, "chat_template", None) and not getattr(self.tokenizer, "chat_template", None):
            raise ModelError(f"The processor of {source or 'this model'} has no chat template, so Inkstone cannot "
                             "build prompts: use an instruct model, or add chat_template.jinja to its directory.")
        if not getattr(self.tokenizer, "chat_template", None):
            self.tokenizer.chat_template = processor.chat_template
        text = HFChatCodec(self.tokenizer, generation_config, source)
        self.stop_ids, self.pad_id = text.stop_ids, text.pad_id
        self._template = processor.chat_template or self.tokenizer.chat_template
        self._lock = threading.RLock()
        self._sizes: dict[tuple[int, int], int] = {}
        """Picture size -> tokens its placeholder expands to (``count``)."""

    def prompt_inputs(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The processor's tensors for ``messages`` (``input_ids``, ``attention_mask``, pixel values and whatever
        else the architecture takes), batch of one, as ``processor.apply_chat_template`` builds them for
        ``generate``; InputError for a picture the processor cannot take."""
        parts, _ = as_parts(messages, pictures=True)
        with self._lock:
            try:
                return dict(self.processor.apply_chat_template(
                    parts, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
                    chat_template=self._template, tools=_tools(messages)))
            except (ValueError, TypeError, IndexError) as exc:
                raise InputError(f"The model's processor could not take the pictures in this message ({exc}); "
                                 "attach a PNG or JPEG of ordinary size.") from None

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """Prompt ids with every picture's image tokens (what the model reads)."""
        return [int(i) for i in self.prompt_inputs(messages)["input_ids"][0].tolist()]

    def count(self, messages: list[dict[str, Any]]) -> int:
        """``len(prompt_ids(messages))`` without preprocessing every picture again: the text is tokenized with each
        picture's placeholder as written, plus the tokens a picture of that size expands to (measured once per
        size; the prompt builder counts the same history many times while it trims)."""
        parts, images = as_parts(messages)
        token = getattr(self.processor, "image_token", None)
        if not images or not isinstance(token, str):
            return len(self.prompt_ids(messages))
        with self._lock:
            text = self.processor.apply_chat_template(parts, add_generation_prompt=True, tokenize=False,
                                                      chat_template=self._template, tools=_tools(messages))
            plain = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return plain + sum(self._expansion(image, token) for image in images)

    def _expansion(self, image: Any, token: str) -> int:
        """Tokens one ``image_token`` placeholder grows by for a picture of ``image``'s size."""
        size = (image.width, image.height)
        if size not in self._sizes:
            with self._lock:
                try:
                    grown = self.processor(text=[token], images=[image.pil()], add_special_tokens=False)
                except (ValueError, TypeError, IndexError) as exc:
                    raise InputError(f"The model's processor could not take {image.name} ({exc}); attach a PNG or "
                                     "JPEG of ordinary size.") from None
                alone = len(self.tokenizer(token, add_special_tokens=False)["input_ids"])
                self._sizes[size] = len(grown["input_ids"][0]) - alone
        return self._sizes[size]

    def decode(self, ids: list[int]) -> str:
        """Decode, skipping special tokens."""
        with self._lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True)
