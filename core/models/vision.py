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


def language_lora_targets(model: Any) -> str:
    """A PEFT ``target_modules`` regex for the linear layers of the language model only (the vision tower and the
    projector keep their weights): the attention and MLP projections under ``language_model``."""
    del model  # the module names are the same in every architecture transformers 5 ships
    return r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


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
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    template = path / "chat_template.jinja"
    chat_template = template.read_text(encoding="utf-8") if template.is_file() else None
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    options = {k: v for k, v in config.items() if k in ("patch_size", "vision_feature_select_strategy",
                                                         "num_additional_image_tokens", "image_seq_len")}
    ImageOnly.__name__ = cls.__name__
    return ImageOnly(image_processor=AutoImageProcessor.from_pretrained(str(path)), tokenizer=tokenizer,
                     video_processor=None, chat_template=chat_template or tokenizer.chat_template, **options)


def as_parts(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Messages in content-part form for a processor's template, and the pictures in prompt order."""
    rendered, images = [], []
    for message in messages:
        pictures = message.get("images") or []
        parts = [{"type": "image"} for _ in pictures]
        content = message.get("content")
        if isinstance(content, str) and (content or not parts):
            parts.append({"type": "text", "text": content})
        rendered.append({**{k: v for k, v in message.items() if k not in ("images", "tools")}, "content": parts})
        images.extend(pictures)
    return rendered, images


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
        self._lock = threading.Lock()

    def prompt_inputs(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The processor's tensors for ``messages`` (``input_ids``, ``attention_mask``, pixel values and whatever
        else the architecture takes), batch of one; InputError for a picture the processor cannot take."""
        parts, images = as_parts(messages)
        pictures = [image.pil() for image in images]
        with self._lock:
            template = self.processor.chat_template or self.tokenizer.chat_template
            text = self.processor.apply_chat_template(parts, add_generation_prompt=True, tokenize=False,
                                                      chat_template=template)
            try:
                return dict(self.processor(text=[text], images=pictures or None, return_tensors="pt"))
            except (ValueError, TypeError, IndexError) as exc:
                raise InputError(f"The model's processor could not take the pictures in this message ({exc}); "
                                 "attach a PNG or JPEG of ordinary size.") from None

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """Prompt ids with every picture's image tokens (what the model reads, and what the budget counts)."""
        return [int(i) for i in self.prompt_inputs(messages)["input_ids"][0].tolist()]

    def decode(self, ids: list[int]) -> str:
        """Decode, skipping special tokens."""
        with self._lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True)
