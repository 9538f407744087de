"""A short real inference with the zoo alone, printing the predictions and the timing
(`make demo model=<name> input=<image file or sentence> [weights=<local path>]`, the
command runners/cli/demo.py). Without weights the model is random (predictions
meaningless, timing real)."""

from __future__ import annotations

import statistics
import time
import zlib
from pathlib import Path

import zoo

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet normalization


def image_batch(path: Path, size: int, channels_last: bool):
    import numpy as np
    from PIL import Image

    image = Image.open(path).convert("RGB")
    scale = 256 / min(image.size)  # resize the short side to 256, center-crop 224 (torchvision's recipe)
    image = image.resize((round(image.width * scale), round(image.height * scale)))
    left, top = (image.width - size) // 2, (image.height - size) // 2
    pixels = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    pixels = (pixels - MEAN) / STD
    return pixels[None].astype(np.float32) if channels_last else pixels.transpose(2, 0, 1)[None].astype(np.float32)


def token_ids(text: str, vocab: int, weights: Path | None) -> tuple[list[int], str]:
    has_tokenizer = bool(
        weights and weights.is_dir() and (any(weights.glob("tokenizer*")) or (weights / "vocab.txt").exists())
    )
    if has_tokenizer:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(weights)(text)["input_ids"], "the checkpoint's tokenizer"
    # No tokenizer at hand (nothing is downloaded): a stable hash of each word.
    return [zlib.crc32(w.lower().encode()) % vocab for w in text.split()] or [0], "hashed words (no tokenizer given)"


def check(model: str, input: str, weights: str | None = None) -> None:
    """Raise ValueError or zoo.UnknownName, with a message for the user, for input the demo cannot take."""
    entry_class = zoo.get(model)
    if entry_class.inputs not in ("image", "text"):
        raise ValueError(f"the demo takes image or text models; {model} takes {entry_class.inputs} input")
    if entry_class.inputs == "image" and not Path(input).is_file():
        raise ValueError(f"{model} needs an image file as input, and {input!r} is not a file")
    if weights and not Path(weights).exists():
        raise ValueError(f"weights {weights} do not exist")


def demo(model: str, input: str, weights: str | None = None, size: str | None = None) -> int:
    """Print the top predictions of `model` on `input` (an image file or a sentence), and the timing."""
    check(model, input, weights)
    name = model
    weights = Path(weights) if weights else None

    began = time.perf_counter()
    loaded = zoo.load(name, size=size, weights=weights)
    entry, model = loaded.entry, loaded.model
    print(
        f"{entry.name} ({entry.size}, {entry.framework}): built in {time.perf_counter() - began:.2f} s, "
        f"{'weights from ' + str(weights) if weights else 'random weights (no weights given)'}"
    )
    if entry.inputs == "image":
        data = image_batch(Path(input), 224, channels_last=entry.framework == "tensorflow")
        note = f"image {input}"
    else:
        ids, how = token_ids(input, getattr(entry, "vocab_size", 30522), weights)
        import numpy as np

        data, note = np.asarray([ids], dtype=np.int32), f"{len(ids)} tokens ({how})"
    logits, times = run(entry, model, data)
    probabilities = softmax(logits[0])
    names = categories(entry, len(probabilities))
    print(f"input: {note}; inference: median {statistics.median(times):.1f} ms over {len(times)} runs")
    for rank, index in enumerate(probabilities.argsort()[::-1][:5], 1):
        print(f"  {rank}. {names[index] if names else 'class ' + str(index)}: {probabilities[index]:.4f}")
    return 0


def run(entry, model, data):
    """Forward the input five times; the logits of the last token for language models."""
    times = []
    if entry.framework == "pytorch":
        import torch

        model.eval()
        tensor = torch.from_numpy(data).long() if entry.inputs == "text" else torch.from_numpy(data)
        for _ in range(5):
            start = time.perf_counter()
            with torch.inference_mode():
                out = model(tensor)
            times.append((time.perf_counter() - start) * 1e3)
        logits = getattr(out, "logits", out)
        logits = logits[:, -1] if logits.dim() == 3 else logits
        return logits.float().numpy(), times
    for _ in range(5):
        start = time.perf_counter()
        out = model(data, training=False)
        times.append((time.perf_counter() - start) * 1e3)
    return out.numpy(), times


def softmax(x):
    import numpy as np

    e = np.exp(x - x.max())
    return e / e.sum()


def categories(entry, count: int) -> list[str]:
    if hasattr(entry, "categories") and count == 1000:
        return entry.categories()
    return []
