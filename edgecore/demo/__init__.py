"""Built-in byte-level demo models, shipped inside the package (no download).

Each subdirectory is a Hugging Face checkpoint: ``config.json`` (with
``"edgecore_tokenizer": "bytes"``: vocabulary = the 256 byte values, token id =
byte value, no special tokens), ``model.safetensors`` and ``training.json``
(held-out loss, data split, hyper-parameters, versions).

- ``gpt2-bytes/``: ``GPT2LMHeadModel``, dense, float32.
- ``mixtral-bytes/``: ``MixtralForCausalLM``, 8 experts, top-2, float16.

Find them with ``importlib.resources.files("edgecore.demo") / "gpt2-bytes"``.
They are trained by ``tools/train_demo.py``; see docs/demo-models.md.
"""
