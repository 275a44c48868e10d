"""Token datasets: English words as letter sequences, and images quantised to k grey levels.

Both are TensorDatasets of kind "tokens" (x: int64 N,L) whose `meta` says how to
read them; a discrete model copies these keys into its config:

    vocab_size  all token ids, data + special        seq_len   L
    data_vocab  D: the data uses ids [0, D)          mask_id   the [MASK] id (= vocab_size - 1)
    grid        () for text, (C, H, W) for images    alphabet  the letters of ids 1.. (text)

Words: id 0 is padding (after the last letter), ids 1..26 the letters a..z,
then [BOS] and [MASK], which never occur in the data: [BOS] is the start-of-word
context of left-to-right models (the n-gram reference), [MASK] the absorbing
state of masked diffusion. The train/test split hashes each word (CRC-32), so it
is deterministic and does not depend on the order or the length of the list.

Image tokens: pixel p in [0, 255] becomes level round(p / 255 * (k - 1)), read
row-major per channel (L = C*H*W); level l decodes back to l / (k - 1) * 255.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import torch

from ..errors import DataError, GenlabError
from .base import TensorDataset
from .download import find_file, hash_file, is_verified, mark_verified, search_roots
from .registry import load_dataset, register_dataset

WORDS_FOLDER, WORDS_FILE = "words", "english-words.txt"
# SHA-256 of the list shipped with genlab's datasets (52,271 words, 3-10 letters, from SCOWL/wamerican)
WORDS_SHA256 = "f631f50f67412982c156b0f56552596ef9335309618d0a7e3b3a86be0f375603"
PAD_ID = 0


# --------------------------------------------------------------------------- words

def word_vocab(alphabet: str) -> dict:
    """The meta keys of a word dataset over `alphabet` (letters get ids 1..len)."""
    bos = len(alphabet) + 1
    return dict(vocab_size=bos + 2, data_vocab=bos, pad_id=PAD_ID, bos_id=bos, mask_id=bos + 1,
                alphabet=alphabet, grid=(), itos=["<pad>", *alphabet, "<bos>", "<mask>"])


def encode_words(words: list[str], alphabet: str, seq_len: int) -> torch.Tensor:
    """Words -> int64 (N, seq_len): letter ids 1.., padded with 0. GenlabError on a bad word."""
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    rows = []
    for w in words:
        if len(w) > seq_len:
            raise GenlabError(f"word {w!r} has {len(w)} letters, more than seq_len {seq_len}")
        bad = sorted(set(w) - set(index))
        if bad:
            raise GenlabError(f"word {w!r} has characters outside the alphabet {alphabet!r}: {''.join(bad)}")
        rows.append([index[c] for c in w] + [PAD_ID] * (seq_len - len(w)))
    return torch.tensor(rows, dtype=torch.long).reshape(len(words), seq_len)


def decode_words(tokens: torch.Tensor, alphabet: str) -> list[str | None]:
    """int (N, L) -> words: letters up to the first pad; None when the sequence is not a word
    (a letter after padding, or a special token), so callers can count malformed samples."""
    words = []
    for row in tokens.tolist():
        chars, ended, ok = [], False, True
        for t in row:
            if t == PAD_ID:
                ended = True
            elif 1 <= t <= len(alphabet) and not ended:
                chars.append(alphabet[t - 1])
            else:
                ok = False
        words.append("".join(chars) if ok and chars else None)
    return words


def show_tokens(tokens: torch.Tensor, alphabet: str, mask_id: int, mask_char: str = "_",
                pad_char: str = ".") -> list[str]:
    """int (N, L) -> one display string per row: letters, '_' for [MASK], '.' for padding."""
    out = []
    for row in tokens.tolist():
        s = []
        for t in row:
            if t == PAD_ID:
                s.append(pad_char)
            elif t == mask_id:
                s.append(mask_char)
            elif 1 <= t <= len(alphabet):
                s.append(alphabet[t - 1])
            else:
                s.append("?")
        out.append("".join(s))
    return out


def in_test_split(word: str, test_fraction: float) -> bool:
    """Deterministic split by hash: the same word is always on the same side."""
    return zlib.crc32(word.encode()) % 10_000 < round(test_fraction * 10_000)


def words_path(data_dir=None, path: str | None = None) -> Path:
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"word list {p} not found; pass path=<a text file with one word per line>")
        return p
    p = find_file((WORDS_FILE,), (WORDS_FOLDER,), search_roots(data_dir))
    if p is None:
        roots = ", ".join(str(r / WORDS_FOLDER) for r in search_roots(data_dir))
        raise DataError(f"{WORDS_FILE} not found (looked in {roots}); point --data-dir / GENLAB_DATA_DIR at a "
                        f"folder with {WORDS_FOLDER}/{WORDS_FILE}, or pass path=<one word per line>")
    if not is_verified(p, WORDS_SHA256):
        got = hash_file(p)
        if got != WORDS_SHA256:
            raise DataError(f"checksum mismatch for {p}: sha256 {got}, expected {WORDS_SHA256}; replace it with "
                            f"genlab's copy or pass path=... to use your own list")
        mark_verified(p, WORDS_SHA256)
    return p


def read_words(data_dir=None, path: str | None = None) -> list[str]:
    """All words of the list, lower-cased and de-duplicated, in file order."""
    p = words_path(data_dir, path)
    seen, words = set(), []
    for line in p.read_text(encoding="utf-8").split():
        w = line.strip().lower()
        if w and w not in seen:
            seen.add(w)
            words.append(w)
    if not words:
        raise DataError(f"word list {p} is empty")
    return words


def load_words(split: str = "train", data_dir=None, n: int | None = None, seq_len: int = 10,
               test_fraction: float = 0.1, path: str | None = None) -> TensorDataset:
    """English words as letter tokens (N, seq_len), padded with 0; words longer than seq_len are left out.

    split: "train", "test" (a hashed test_fraction of the list) or "all".
    """
    if seq_len < 1:
        raise GenlabError(f"seq_len must be at least 1, got {seq_len}")
    if not 0 < test_fraction < 1:
        raise GenlabError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if split not in ("train", "test", "all"):
        raise GenlabError(f"words has splits train, test and all; got {split!r}")
    everything = read_words(data_dir, path)
    alphabet = "".join(sorted(set("".join(everything))))
    fits = [w for w in everything if len(w) <= seq_len]
    if split == "all":
        words = fits
    else:
        words = [w for w in fits if in_test_split(w, test_fraction) == (split == "test")]
    if n is not None:
        words = words[:n]
    meta = dict(word_vocab(alphabet), seq_len=seq_len, test_fraction=test_fraction, split=split,
                source=str(words_path(data_dir, path)), path=path, too_long=len(everything) - len(fits))
    return TensorDataset("words", "tokens", {"x": encode_words(words, alphabet, seq_len)},
                         captions=words, meta=meta)


def word_sets(data: TensorDataset, data_dir=None) -> tuple[set[str], set[str]]:
    """(train words, whole dictionary) for a word dataset, read again from its source list."""
    everything = read_words(data_dir, data.meta.get("path"))
    frac = data.meta.get("test_fraction", 0.1)
    train = {w for w in everything if not in_test_split(w, frac)}
    return train, set(everything)


def _locate_words(data_dir=None):
    p = find_file((WORDS_FILE,), (WORDS_FOLDER,), search_roots(data_dir))
    return (str(p), "found") if p else ("", "missing")


# --------------------------------------------------------------------------- image tokens

def quantize_images(data: TensorDataset, levels: int = 2) -> TensorDataset:
    """An image TensorDataset (uint8 N,C,H,W) -> token grids with `levels` grey levels (N, C*H*W)."""
    if data.kind != "image":
        raise GenlabError(f"quantize_images needs an image dataset, got kind {data.kind!r}")
    if not 2 <= levels <= 256:
        raise GenlabError(f"levels must be between 2 and 256, got {levels}")
    n, c, h, w = data.x.shape
    tokens = torch.round(data.x.float() * ((levels - 1) / 255.0)).long().reshape(n, c * h * w)
    meta = dict(data.meta, vocab_size=levels + 1, seq_len=c * h * w, data_vocab=levels, mask_id=levels,
                levels=levels, grid=(c, h, w), alphabet="", source_dataset=data.name)
    tensors = dict(data.tensors, x=tokens)
    return TensorDataset(data.name, "tokens", tensors, data.classes, data.captions, meta)


def tokens_to_images(tokens: torch.Tensor, grid: tuple[int, int, int], levels: int,
                     mask_id: int | None = None) -> torch.Tensor:
    """Token grids (N, C*H*W) -> images in [-1, 1] (N, C, H, W); level l -> l / (levels - 1).

    With mask_id, [MASK] tokens are drawn red (the result is then RGB) so a partly
    denoised grid shows what is still unknown.
    """
    c, h, w = grid
    if tokens.shape[-1] != c * h * w:
        raise GenlabError(f"token grids of length {tokens.shape[-1]} do not fit the image grid {grid}")
    t = tokens.reshape(-1, c, h, w)
    img = t.clamp(0, levels - 1).float() * (2.0 / (levels - 1)) - 1
    if mask_id is None:
        return img
    masked = (t == mask_id).any(1, keepdim=True)
    rgb = img.expand(-1, 3, -1, -1) if c == 1 else img
    red = torch.tensor([1.0, -1.0, -1.0], device=img.device).view(1, 3, 1, 1)
    return torch.where(masked, red, rgb)


def load_image_tokens(base: str, split: str = "train", levels: int = 2, data_dir=None, image_size: int | None = None,
                      channels: int | None = None, n: int | None = None) -> TensorDataset:
    """Load the image dataset `base` and quantise it to `levels` grey levels per pixel."""
    images = load_dataset(base, split=split, image_size=image_size, data_dir=data_dir, channels=channels, n=n)
    return quantize_images(images, levels)


def _image_tokens_loader(base: str, default_levels: int):
    def loader(split: str = "train", data_dir=None, image_size: int | None = None, channels: int | None = None,
               n: int | None = None, levels: int = default_levels) -> TensorDataset:
        return load_image_tokens(base, split, levels, data_dir, image_size, channels, n)
    loader.__name__ = f"load_{base}_tokens"
    return loader


IMAGE_TOKEN_SOURCES: dict[str, str] = {}  # "fashion_mnist-binary" -> "fashion_mnist"


def image_token_source(dataset: str) -> str:
    """The image dataset an image-token dataset quantises (itself for any other name).

    The metrics use it to find the feature classifier: binarised Fashion-MNIST is
    judged by the Fashion-MNIST classifier, against binarised real images.
    """
    return IMAGE_TOKEN_SOURCES.get(dataset, dataset)


register_dataset("words", load_words, "52k English words (3-10 letters) as letter tokens; options seq_len, "
                 "test_fraction, path", kind="tokens", splits=("train", "test", "all"), locate=_locate_words)
for _base in ("mnist", "fashion_mnist", "shapes"):
    IMAGE_TOKEN_SOURCES[f"{_base}-binary"] = IMAGE_TOKEN_SOURCES[f"{_base}-tokens"] = _base
    register_dataset(f"{_base}-binary", _image_tokens_loader(_base, 2),
                     f"{_base} pixels binarised (threshold 128) as token grids", kind="tokens")
    register_dataset(f"{_base}-tokens", _image_tokens_loader(_base, 4),
                     f"{_base} pixels quantised to k grey levels (option levels, default 4) as token grids",
                     kind="tokens")


def parse_pattern(pattern: str, alphabet: str, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An infilling pattern -> (tokens, fixed_mask) of one row of length seq_len.

    Letters are fixed, '_' is a free letter position, and the word ends where the
    pattern ends (the padding is fixed too) unless the pattern ends with '*', which
    leaves every later position free. "c__t" -> four-letter words c?? t.
    """
    pattern = pattern.replace(" ", "").lower()
    open_end = pattern.endswith("*")
    body = pattern[:-1] if open_end else pattern
    if not body and not open_end:
        raise GenlabError("the pattern is empty; give letters and '_' (e.g. c__t), or '*' for any word")
    if len(body) > seq_len:
        raise GenlabError(f"pattern {pattern!r} is longer than the model's seq_len {seq_len}")
    bad = sorted(set(body) - set(alphabet) - {"_"})
    if bad or "*" in body:
        raise GenlabError(f"pattern {pattern!r} has characters outside the alphabet: {''.join(bad) or '*'}; "
                          f"use letters, '_' for a free position and a final '*' for a free ending")
    tokens = torch.zeros(seq_len, dtype=torch.long)
    fixed = torch.zeros(seq_len, dtype=torch.bool)
    for i, c in enumerate(body):
        if c != "_":
            tokens[i] = alphabet.index(c) + 1
            fixed[i] = True
    if not open_end:
        fixed[len(body):] = True  # padding after the pattern: the word has exactly this length
    return tokens, fixed


def pattern_letters(pattern: str, seq_len: int) -> torch.Tensor:
    """(seq_len,) bool: the '_' positions of a pattern, which must become letters (never padding)."""
    body = pattern.replace(" ", "").rstrip("*")
    where = torch.zeros(seq_len, dtype=torch.bool)
    where[: len(body)] = torch.tensor([c == "_" for c in body], dtype=torch.bool)
    return where
