"""The program/QA task: the reference text generator, the fixed validation set, a fast
seeded training stream, and the byte encoding (docs/science.md, "The task").

One sample is one line of text, e.g. ``XBFVU:3>4 1>4 1>2:BFVXU`` (input, program, answer).
The model sees the text with every answer character replaced by token 0 (the mask) and is
trained to predict the full text.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from tune_selcopy.errors import UserError

MASK_TOKEN = 0
PAD_TOKEN = ord(" ")
ALPHABET = string.ascii_uppercase
SWAP_ONLY = {">": 1.0}
REFERENCE_OPERATORS = {">": 1.0, "-": 1 / 3, "+": 1 / 3}
VALIDATION_SEED = 23
VALIDATION_COUNT = 10_000
MAX_SWAPS = 4  # the tensor stream's limit, set by its 63-bit question keys

IntOrRange = int | tuple[int, int]


def _draw(rng: random.Random, value: IntOrRange) -> int:
    """A fixed int, or ``rng.randint(lo, hi)`` for an inclusive range (the reference's call)."""
    if isinstance(value, int):
        return value
    lo, hi = value
    return rng.randint(lo, hi)


def _upper(value: IntOrRange) -> int:
    return value if isinstance(value, int) else value[1]


def generate_texts(
    count: int,
    rng: random.Random,
    *,
    input_length: IntOrRange = 5,
    num_items: IntOrRange = 26,
    num_operations: IntOrRange = 3,
    operators: Mapping[str, float] = SWAP_ONLY,
    fifo: bool = False,
    exclude: frozenset[str] | set[str] = frozenset(),
) -> list[str]:
    """``count`` distinct texts, making exactly the reference generator's random calls.

    Follows the steps of docs/science.md ("The validation set, exactly") so that
    ``random.Random(23)`` reproduces the published validation set sample for sample.
    Operators: ``>`` swap, ``-`` remove to a stack, ``+`` pop the stack (LIFO, or FIFO
    with ``fifo``) and insert.
    """
    unknown = set(operators) - set(REFERENCE_OPERATORS)
    if unknown:
        raise UserError(f"unknown operators {sorted(unknown)}; known: > - +")
    names = list(operators)
    weights = [operators[name] for name in names]
    answer_length = _upper(input_length)
    seen: set[str] = set()
    texts: list[str] = []
    while len(texts) < count:
        length = _draw(rng, input_length)
        items_count = _draw(rng, num_items)
        ops_count = _draw(rng, num_operations)
        items = list(ALPHABET[:items_count])
        rng.shuffle(items)
        memory = items[:length]
        source = "".join(memory)
        stack: list[str] = []
        ops: list[str] = []
        while memory and len(ops) < ops_count:
            op = rng.choices(names, weights=weights)[0]
            if op == "-":
                i = rng.randrange(len(memory))
                stack.append(memory.pop(i))
                ops.append(f"-{i + 1}")
            elif op == "+" and stack:
                i = rng.randrange(len(memory))
                memory.insert(i, stack.pop(0 if fifo else -1))
                ops.append(f"+{i + 1}")
            elif op == ">" and len(memory) >= 2:
                idx = list(range(len(memory)))
                rng.shuffle(idx)
                memory[idx[0]], memory[idx[1]] = memory[idx[1]], memory[idx[0]]
                ops.append(f"{idx[0] + 1}>{idx[1] + 1}")
        question = source + ":" + " ".join(ops)
        if question in seen:
            continue
        seen.add(question)
        text = question + ":" + "".join(memory)[:answer_length].ljust(answer_length)
        if text in exclude:
            continue
        texts.append(text)
    return texts


@lru_cache(maxsize=4)
def validation_texts(
    count: int = VALIDATION_COUNT, num_operations: int = 3, input_length: int = 5, num_items: int = 26
) -> tuple[str, ...]:
    """The reference validation set: the first ``count`` texts of ``random.Random(23)``.

    A smaller ``count`` gives a prefix of the full set (the generator is sequential).
    """
    rng = random.Random(VALIDATION_SEED)
    return tuple(
        generate_texts(
            count, rng, input_length=input_length, num_items=num_items, num_operations=num_operations
        )
    )


def encode(texts: list[str] | tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts -> (inputs, targets), both int64 ``[B, L]`` right-padded with spaces.

    targets are the UTF-8 bytes; inputs are the same with every answer character (after
    the last ``:``) replaced by the mask token 0.
    """
    width = max(len(t.encode()) for t in texts)
    targets = torch.full((len(texts), width), PAD_TOKEN, dtype=torch.long)
    inputs = targets.clone()
    for row, text in enumerate(texts):
        raw = text.encode()
        answer_start = raw.rindex(b":") + 1
        tokens = torch.tensor(list(raw), dtype=torch.long)
        targets[row, : len(raw)] = tokens
        tokens[answer_start:] = MASK_TOKEN
        inputs[row, : len(raw)] = tokens
    return inputs, targets


# --- Fast training stream (swap-only programs, generated as tensors) -----------------


@dataclass(frozen=True)
class SwapBatch:
    """A batch of swap programs in structured form, all int64 on one device.

    letters ``[N, len]`` item indices (0 = 'A'); ops ``[N, max_ops, 2]`` 0-based positions
    (a, b) of each swap; n_ops ``[N]`` how many of the op slots are used.
    """

    letters: torch.Tensor
    ops: torch.Tensor
    n_ops: torch.Tensor

    def __len__(self) -> int:
        return self.letters.shape[0]

    def select(self, index: torch.Tensor) -> "SwapBatch":
        return SwapBatch(self.letters[index], self.ops[index], self.n_ops[index])

    def to(self, device: torch.device | str) -> "SwapBatch":
        return SwapBatch(self.letters.to(device), self.ops.to(device), self.n_ops.to(device))

    @staticmethod
    def cat(batches: Sequence["SwapBatch"]) -> "SwapBatch":
        """The samples of ``batches`` one after the other."""
        return SwapBatch(*(torch.cat([getattr(b, f) for b in batches]) for f in ("letters", "ops", "n_ops")))

    def keys(self) -> torch.Tensor:
        """One int64 per question (input letters, op count and ops), unique per question.

        Letters take 5 bits each, the op count 3 bits, each op position 4 bits: this fits
        in 63 bits for input_length <= 5 and up to ``MAX_SWAPS`` ops, which ``SwapStream``
        checks.
        """
        key = self.n_ops.clone()
        for j in range(MAX_SWAPS):  # a fixed slot count, so keys agree across op ranges
            if j < self.ops.shape[1]:
                used = (j < self.n_ops).long()
                key = key * 256 + used * (self.ops[:, j, 0] * 16 + self.ops[:, j, 1])
            else:
                key = key * 256
        for i in range(self.letters.shape[1]):
            key = key * 32 + self.letters[:, i]
        return key

    def answers(self) -> torch.Tensor:
        """``[N, len]`` memory after running each program."""
        memory = self.letters.clone()
        rows = torch.arange(len(self), device=memory.device)
        for j in range(self.ops.shape[1]):
            a, b = self.ops[:, j, 0], self.ops[:, j, 1]
            used = j < self.n_ops
            va, vb = memory[rows, a], memory[rows, b]
            memory[rows, a] = torch.where(used, vb, va)
            memory[rows, b] = torch.where(used, va, vb)
        return memory

    def tokens(self, max_ops: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) int64 ``[N, L]``, L = the longest text, padded with spaces.

        Layout: letters, ``:``, ops ``a>b`` joined by spaces, ``:``, answer; the answer
        positions are masked (token 0) in inputs. ``max_ops`` (at least the largest op
        count) widens L to that many ops; given, nothing is read back to the host.
        """
        n, length = self.letters.shape
        max_ops = int(self.n_ops.max()) if max_ops is None else max_ops
        width = 2 * length + 4 * max_ops + 1
        device = self.letters.device
        rows = torch.arange(n, device=device)
        text = torch.full((n, width), PAD_TOKEN, dtype=torch.long, device=device)
        text[:, :length] = self.letters + ord("A")
        text[:, length] = ord(":")
        for j in range(max_ops):
            used = j < self.n_ops
            start = length + 1 + 4 * j
            for offset, value in (
                (0, self.ops[:, j, 0] + ord("1")),
                (1, torch.full_like(self.n_ops, ord(">"))),
                (2, self.ops[:, j, 1] + ord("1")),
            ):
                text[:, start + offset] = torch.where(used, value, text[:, start + offset])
            between = j < self.n_ops - 1
            text[:, start + 3] = torch.where(between, ord(" "), text[:, start + 3])
        colon = length + 4 * self.n_ops  # after input, ':' and 4n-1 program characters
        text[rows, colon] = ord(":")
        answer_pos = colon[:, None] + 1 + torch.arange(length, device=device)
        inputs = text.clone()
        text.scatter_(1, answer_pos, self.answers() + ord("A"))
        inputs.scatter_(1, answer_pos, torch.zeros_like(answer_pos))
        return inputs, text

    @staticmethod
    def parse(texts: list[str] | tuple[str, ...]) -> "SwapBatch":
        """Swap-program texts (``XBFVU:3>4 1>2:...``) back into structured form."""
        letters, ops, n_ops = [], [], []
        max_ops = 0
        for text in texts:
            source, program, _ = text.split(":")
            pairs = [tuple(int(p) - 1 for p in op.split(">")) for op in program.split(" ") if op]
            letters.append([ALPHABET.index(c) for c in source])
            ops.append(pairs)
            n_ops.append(len(pairs))
            max_ops = max(max_ops, len(pairs))
        padded = [p + [(0, 0)] * (max_ops - len(p)) for p in ops]
        return SwapBatch(
            torch.tensor(letters, dtype=torch.long),
            torch.tensor(padded, dtype=torch.long).reshape(len(texts), max_ops, 2),
            torch.tensor(n_ops, dtype=torch.long),
        )


def swap_questions(input_length: int, num_items: int, num_operations: tuple[int, int]) -> int:
    """How many distinct swap-program questions there are: the arrangements of
    ``input_length`` of the first ``num_items`` letters, times the programs of n ordered
    swaps of distinct positions, (L (L - 1))^n, for n in the inclusive range."""
    lo, hi = num_operations
    pairs = input_length * (input_length - 1)
    return math.perm(num_items, input_length) * sum(pairs**n for n in range(lo, hi + 1))


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for one (trial seed, epoch) pair."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


@lru_cache(maxsize=4)
def question_keys(texts: tuple[str, ...]) -> torch.Tensor:
    """The distinct question keys of ``texts``, sorted (read-only): parsed once per text
    set, as every seed of a stack excludes the same validation set (~0.13 s each)."""
    return torch.unique(SwapBatch.parse(texts).keys())


class SwapStream:
    """Seeded training samples for swap-only programs, generated as tensors on the CPU.

    Same distribution as the reference generator with operators ``{">": w}``: a uniform
    random arrangement of ``input_length`` of the first ``num_items`` letters, an op
    count uniform in ``num_operations``, each swap a uniform ordered pair of distinct
    positions. Each epoch is drawn whole from a generator seeded by (seed, epoch), so a
    stream restarts at any epoch without saved RNG state; within an epoch questions are
    distinct (the reference's dedup) and no text of ``exclude`` is ever produced.

    The draws are made with a CPU generator whatever device trains on them: CUDA's
    generator yields other numbers for the same seed, so a seed would train on other data
    on a GPU, and a checkpoint resumed on another device type would switch streams.
    ``stacked_batches`` moves an epoch to the training device in one copy.
    """

    def __init__(
        self,
        seed: int,
        *,
        input_length: int = 5,
        num_items: int = 26,
        num_operations: IntOrRange = (1, 3),
        exclude: tuple[str, ...] = (),
    ):
        lo, hi = self.check(input_length, num_items, num_operations)
        self.seed = seed
        self.input_length, self.num_items, self.ops_range = input_length, num_items, (lo, hi)
        self.excluded = question_keys(exclude) if exclude else None

    @staticmethod
    def check(input_length: int, num_items: int, num_operations: IntOrRange) -> tuple[int, int]:
        """The op-count range ``(lo, hi)``; ``UserError`` for settings the stream cannot draw."""
        lo, hi = (num_operations, num_operations) if isinstance(num_operations, int) else num_operations
        if not (2 <= input_length <= 5 and input_length <= num_items <= 26 and 1 <= lo <= hi <= MAX_SWAPS):
            raise UserError(
                "the tensor training stream supports input_length 2..5, num_items "
                f"input_length..26 and 1..{MAX_SWAPS} swaps; got input_length={input_length}, "
                f"num_items={num_items}, num_operations={num_operations}"
            )
        return lo, hi

    @staticmethod
    def check_room(input_length: int, num_items: int, num_operations: tuple[int, int], epoch: int,
                   val_num_operations: int) -> None:
        """``UserError`` when fewer distinct questions exist than the validation set (10,000)
        or an epoch and the validation texts it excludes need: the generators draw until
        they have that many distinct ones, and would never stop."""
        val = swap_questions(input_length, num_items, (val_num_operations, val_num_operations))
        train = swap_questions(input_length, num_items, num_operations)
        where = f"input_length={input_length}, num_items={num_items}"
        if val < VALIDATION_COUNT:
            raise UserError(f"only {val:,} distinct validation questions exist with {where}, "
                            f"val_num_operations={val_num_operations}; the validation set is {VALIDATION_COUNT:,}")
        if train < epoch + VALIDATION_COUNT:
            raise UserError(f"only {train:,} distinct training questions exist with {where}, num_operations="
                            f"{','.join(map(str, num_operations))}; an epoch of {epoch:,} distinct ones that are "
                            f"not among the {VALIDATION_COUNT:,} validation texts needs more")

    def _draw(self, count: int, generator: torch.Generator) -> SwapBatch:
        lo, hi = self.ops_range
        # A uniform random permutation of the items, cut to input_length (= shuffle + slice).
        order = torch.rand(count, self.num_items, generator=generator).argsort(dim=1)
        letters = order[:, : self.input_length]
        n_ops = torch.randint(lo, hi + 1, (count,), generator=generator)
        a = torch.randint(0, self.input_length, (count, hi), generator=generator)
        b = torch.randint(0, self.input_length - 1, (count, hi), generator=generator)
        b = b + (b >= a).long()  # uniform over positions != a
        return SwapBatch(letters, torch.stack([a, b], dim=-1), n_ops)

    def epoch(self, epoch: int, count: int) -> SwapBatch:
        """The ``count`` distinct, non-excluded samples of one epoch, on the CPU."""
        generator = torch.Generator()
        generator.manual_seed(epoch_seed(self.seed, epoch))
        batch = self._draw(count, generator)
        while True:
            keys = batch.keys()
            unique, inverse = torch.unique(keys, return_inverse=True)
            first = torch.full_like(unique, len(keys)).scatter_reduce(
                0, inverse, torch.arange(len(keys)), reduce="amin"
            )
            keep = torch.zeros(len(keys), dtype=torch.bool)
            keep[first] = True
            if self.excluded is not None:
                keep &= ~torch.isin(keys, self.excluded)
            batch = batch.select(keep.nonzero().squeeze(1))
            missing = count - len(batch)
            if missing <= 0:
                return batch.select(torch.arange(count))
            # Rare (dedup or exclusion hits): top up with fresh draws and check again.
            batch = SwapBatch.cat([batch, self._draw(missing + 16, generator)])


def stacked_batches(
    epochs: Sequence[SwapBatch], batch_size: int, device: torch.device | str = "cpu"
) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[int]]]:
    """The batches of K streams' epochs (CPU ``SwapBatch`` es of equal length) side by side.

    Per step: inputs and targets ``[K, B, W]`` on ``device`` and each stream's own batch
    width (its longest text); W is the widest of them, and stream k's batch is
    ``inputs[k, :, :widths[k]]``. The K epochs are moved to ``device`` in one copy and
    tokenized there once; the widths are computed on the CPU, so no step waits on the
    device. Each stream's batch is cut to its own longest text, which is exactly the
    reference collate's right-padding with spaces.
    """
    count = len(epochs[0])
    if any(len(e) != count for e in epochs):
        raise ValueError(f"epochs of unequal length {[len(e) for e in epochs]}")
    length = epochs[0].letters.shape[1]
    n_ops = torch.stack([e.n_ops for e in epochs])  # [K, N], on the CPU
    pad = (-n_ops.shape[1]) % batch_size
    longest = torch.nn.functional.pad(n_ops, (0, pad)).reshape(len(epochs), -1, batch_size).amax(dim=2)
    widths = (2 * length + 1 + 4 * longest).T.tolist()  # [steps][K]
    inputs, targets = SwapBatch.cat(epochs).to(device).tokens(int(longest.max()))
    inputs, targets = inputs.view(len(epochs), count, -1), targets.view(len(epochs), count, -1)
    for begin, step_widths in zip(range(0, count, batch_size), widths):
        end, width = begin + batch_size, max(step_widths)
        yield inputs[:, begin:end, :width], targets[:, begin:end, :width], step_widths
