"""llama.cpp as Inkstone's CPU engine for bundled GGUF models: its build at set-up (``build``), the managed server
process (``server``), personas' adapters as GGUF LoRA (``lora``), and the choice of engine (``engine``)."""
