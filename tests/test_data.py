"""The task data (docs/science.md, "The task"): reference generator, validation set, encoding and
the seeded tensor training stream.

Answers are checked with a small interpreter written here from the task's description, not
with the package's own code.
"""

from __future__ import annotations

import collections
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tune_selcopy.errors import UserError
from tune_selcopy.science.task import (
    ALPHABET,
    MASK_TOKEN,
    PAD_TOKEN,
    REFERENCE_OPERATORS,
    SWAP_ONLY,
    SwapBatch,
    SwapStream,
    encode,
    generate_texts,
    stacked_batches,
    validation_texts,
)

ROOT = Path(__file__).resolve().parents[1]


def batches(samples: SwapBatch, batch_size: int, device: str = "cpu"):
    """One stream's batches ``[B, W]``, each cut to its own width, as a lone trial sees them."""
    for inputs, targets, (width,) in stacked_batches([samples], batch_size, device):
        yield inputs[0, :, :width], targets[0, :, :width]
SPEC_FIRST_THREE = ["XBFVU:3>4 1>4 1>2:BFVXU", "QHGYE:4>5 3>1 3>2:GQHEY", "TQWUH:4>3 2>5 4>1:WHUTQ"]


# --- an independent interpreter ----------------------------------------------------------


def run_program(source: str, program: str, fifo: bool = False) -> list[str]:
    """Run ``program`` (space-separated ``a>b``, ``-x``, ``+x``; 1-based) on ``source``."""
    memory = list(source)
    stack: list[str] = []
    for op in program.split():
        if ">" in op:
            a, b = (int(p) - 1 for p in op.split(">"))
            assert a != b and 0 <= a < len(memory) and 0 <= b < len(memory), op
            memory[a], memory[b] = memory[b], memory[a]
        elif op[0] == "-":
            i = int(op[1:]) - 1
            assert 0 <= i < len(memory), op
            stack.append(memory.pop(i))
        elif op[0] == "+":
            i = int(op[1:]) - 1
            assert stack and 0 <= i < len(memory), op
            memory.insert(i, stack.pop(0) if fifo else stack.pop())
        else:
            raise AssertionError(f"unknown op {op!r}")
    return memory


def expected_answer(text: str, answer_length: int, fifo: bool = False) -> str:
    source, program, _ = text.split(":")
    return "".join(run_program(source, program, fifo))[:answer_length].ljust(answer_length)


def decode_rows(tokens: torch.Tensor) -> list[str]:
    """``[N, L]`` byte tokens (padded with spaces) -> strings without the padding."""
    rows = tokens.cpu().numpy().astype(np.uint8)
    return [row.tobytes().decode().rstrip(" ") for row in rows]


def texts_from_fields(batch: SwapBatch) -> list[str]:
    """Build texts from a SwapBatch's structured fields, answers by our interpreter."""
    texts = []
    for letters, ops, n in zip(batch.letters.tolist(), batch.ops.tolist(), batch.n_ops.tolist()):
        source = "".join(ALPHABET[i] for i in letters)
        program = " ".join(f"{a + 1}>{b + 1}" for a, b in ops[:n])
        texts.append(f"{source}:{program}:" + "".join(run_program(source, program)))
    return texts


# --- the reference validation set --------------------------------------------------------


def test_first_three_validation_samples_match_the_spec():
    assert list(validation_texts(3)) == SPEC_FIRST_THREE
    assert list(validation_texts()[:3]) == SPEC_FIRST_THREE


def test_validation_set_is_10000_distinct_23_char_swap_texts():
    texts = validation_texts()
    assert len(texts) == 10_000
    assert len(set(texts)) == 10_000
    assert {len(t) for t in texts} == {23}
    for text in texts:
        source, program, answer = text.split(":")
        assert len(set(source)) == 5 and set(source) <= set(ALPHABET)
        assert len(program.split(" ")) == 3 and all(">" in op for op in program.split(" "))
        assert answer == expected_answer(text, 5)
    # a prefix of the set is the set's prefix (sequential generator)
    assert validation_texts(500) == texts[:500]
    inputs, targets = encode(texts[:100])
    assert inputs.shape == targets.shape == (100, 23)


def test_validation_cli_prints_the_first_texts():
    out = subprocess.run(
        [sys.executable, "-m", "tune_selcopy.data", "validation", "--count", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    assert out.stdout.splitlines() == SPEC_FIRST_THREE


# --- the general generator ----------------------------------------------------------------


def reference_generator(count, rng, input_length, num_items, num_operations, operators, fifo):
    """The steps of docs/science.md ("The validation set, exactly"), written out again (no dedup/exclude)."""
    texts = []
    draw = lambda v: rng.randint(*v) if isinstance(v, tuple) else v  # noqa: E731
    while len(texts) < count:
        length, n_items, n_ops = draw(input_length), draw(num_items), draw(num_operations)
        items = [chr(ord("A") + i) for i in range(n_items)]
        rng.shuffle(items)
        memory = items[:length]
        source = "".join(memory)
        stack, ops = [], []
        while memory and len(ops) < n_ops:
            op = rng.choices(list(operators), weights=list(operators.values()))[0]
            if op == "-":
                i = rng.randrange(len(memory))
                stack.append(memory.pop(i))
                ops.append(f"-{i + 1}")
            elif op == "+" and stack:
                i = rng.randrange(len(memory))
                memory.insert(i, stack.pop(0) if fifo else stack.pop())
                ops.append(f"+{i + 1}")
            elif op == ">" and len(memory) >= 2:
                idx = list(range(len(memory)))
                rng.shuffle(idx)
                memory[idx[0]], memory[idx[1]] = memory[idx[1]], memory[idx[0]]
                ops.append(f"{idx[0] + 1}>{idx[1] + 1}")
        hi = input_length[1] if isinstance(input_length, tuple) else input_length
        texts.append(source + ":" + " ".join(ops) + ":" + "".join(memory)[:hi].ljust(hi))
    return texts


@pytest.mark.parametrize("fifo", [False, True])
def test_stack_operators_give_answers_of_the_program(fifo):
    kwargs = dict(input_length=(3, 7), num_items=(8, 12), num_operations=(1, 6))
    texts = generate_texts(3000, random.Random(7), operators=REFERENCE_OPERATORS, fifo=fifo, **kwargs)
    assert len(set(texts)) == 3000
    ops_seen = collections.Counter()
    differs_from_other_order = 0
    for text in texts:
        source, program, answer = text.split(":")
        assert answer == expected_answer(text, 7, fifo), text
        differs_from_other_order += answer != expected_answer(text, 7, not fifo)
        assert 3 <= len(source) <= 7 and len(set(source)) == len(source)
        assert set(source) <= set(ALPHABET[:12])
        assert 1 <= len(program.split()) <= 6
        ops_seen.update(op[0] if op[0] in "+-" else ">" for op in program.split())
    assert set(ops_seen) == {">", "-", "+"}
    # '+' can only follow a '-', so it is rarer than '-'; '>' has 3x the weight of either
    assert ops_seen[">"] > ops_seen["-"] >= ops_seen["+"] > 0
    # the fifo option matters: some answers would differ under the other stack order
    assert differs_from_other_order > 0


def test_generator_makes_the_spec_random_calls():
    kwargs = dict(input_length=(3, 7), num_items=(8, 12), num_operations=(0, 6), operators=REFERENCE_OPERATORS)
    for fifo in (False, True):
        ours = generate_texts(300, random.Random(11), fifo=fifo, **kwargs)
        ref = reference_generator(300, random.Random(11), fifo=fifo, **{**kwargs, "operators": dict(REFERENCE_OPERATORS)})
        # dedup can only skip, and with this large a space it does not
        assert ours == ref


def test_ranges_are_honoured_and_all_values_drawn():
    texts = generate_texts(
        4000, random.Random(3), input_length=(2, 6), num_items=(6, 9), num_operations=(1, 4), operators=SWAP_ONLY
    )
    lengths = collections.Counter(len(t.split(":")[0]) for t in texts)
    n_ops = collections.Counter(len(t.split(":")[1].split()) for t in texts)
    top_letter = collections.Counter(max(t.split(":")[0]) for t in texts if len(t.split(":")[0]) == 6)
    assert set(lengths) == {2, 3, 4, 5, 6}
    assert set(n_ops) == {1, 2, 3, 4}  # swap-only programs always get all their ops
    assert set(top_letter) <= set("FGHI") and "I" in top_letter  # never beyond the 9th letter
    for t in texts:
        assert len(t.split(":")[2]) == 6  # answer padded to the maximum input_length
        assert t.split(":")[2] == expected_answer(t, 6)
    fixed = generate_texts(200, random.Random(3), input_length=4, num_items=4, num_operations=2)
    assert all(sorted(t[:4]) == list("ABCD") and len(t.split(":")[1].split()) == 2 for t in fixed)


def test_dedup_and_exclude():
    # the whole question space: 2 arrangements x 2 ordered swaps
    space = {"AB:1>2:BA", "AB:2>1:BA", "BA:1>2:AB", "BA:2>1:AB"}
    all_four = generate_texts(4, random.Random(0), input_length=2, num_items=2, num_operations=1)
    assert sorted(all_four) == sorted(space)
    excluded = {"AB:2>1:BA"}
    rest = generate_texts(3, random.Random(0), input_length=2, num_items=2, num_operations=1, exclude=excluded)
    assert set(rest) == space - excluded and len(rest) == 3
    # excluding the first 100 validation texts yields exactly the next ones (the skipped
    # draws still consume the random stream)
    val = validation_texts(400)
    after = generate_texts(300, random.Random(23), exclude=set(val[:100]))
    assert after == list(val[100:400])


def test_unknown_operator_is_a_user_error():
    with pytest.raises(UserError, match="unknown operators"):
        generate_texts(1, random.Random(0), operators={"*": 1})


def test_encode_masks_answers_and_pads_with_spaces():
    inputs, targets = encode(["AB:1>2:BA", "ABC:1>2 2>3:BCA"])
    assert targets.shape == inputs.shape == (2, 15)
    assert decode_rows(targets) == ["AB:1>2:BA", "ABC:1>2 2>3:BCA"]
    assert targets[0, 9:].tolist() == [PAD_TOKEN] * 6 and inputs[0, 9:].tolist() == [PAD_TOKEN] * 6
    assert inputs[0, :7].tolist() == list(b"AB:1>2:") and inputs[0, 7:9].tolist() == [MASK_TOKEN] * 2
    assert inputs[1, 12:].tolist() == [MASK_TOKEN] * 3
    assert (inputs == MASK_TOKEN).sum() == 5


# --- the tensor training stream ----------------------------------------------------------


@pytest.fixture(scope="module")
def two_epochs():
    stream = SwapStream(1, exclude=validation_texts())
    return [stream.epoch(e, 100_000) for e in range(2)]


def test_stream_never_produces_a_validation_text(two_epochs):
    val = set(validation_texts())
    for samples in two_epochs:
        texts = decode_rows(samples.tokens()[1])
        assert len(texts) == 100_000
        assert not val & set(texts)
        assert len({t.rsplit(":", 1)[0] for t in texts}) == 100_000  # questions distinct in an epoch


def test_stream_exclusion_is_effective_when_it_matters():
    # Exclude exactly what the same seed draws first: every one of those must be skipped.
    plain = SwapStream(5).epoch(0, 20_000)
    first = texts_from_fields(plain)
    excluding = SwapStream(5, exclude=tuple(first)).epoch(0, 20_000)
    assert not set(first) & set(decode_rows(excluding.tokens()[1]))
    # A tiny space (6 arrangements x 6 ordered swaps = 36 questions): 10 excluded,
    # an epoch of 26 must be exactly the other 26.
    space = generate_texts(36, random.Random(0), input_length=3, num_items=3, num_operations=1)
    assert len(set(space)) == 36
    stream = SwapStream(2, input_length=3, num_items=3, num_operations=1, exclude=tuple(space[:10]))
    assert sorted(decode_rows(stream.epoch(0, 26).tokens()[1])) == sorted(space[10:])


def test_stream_distribution(two_epochs):
    samples = two_epochs[0]
    counts = torch.bincount(samples.n_ops, minlength=5).tolist()
    assert counts[0] == 0 and counts[4] == 0
    for n in (1, 2, 3):
        assert abs(counts[n] / 100_000 - 1 / 3) < 0.01, counts
    texts = decode_rows(samples.tokens()[1])
    assert collections.Counter(t.count(">") for t in texts) == {n: counts[n] for n in (1, 2, 3)}
    letters = samples.letters
    assert letters.min() >= 0 and letters.max() <= 25
    assert all(len(set(t[:5])) == 5 for t in texts)  # distinct letters per sample
    first_letter = torch.bincount(letters[:, 0], minlength=26) / 100_000
    assert (first_letter - 1 / 26).abs().max() < 0.006
    a, b = samples.ops[:, :, 0], samples.ops[:, :, 1]
    assert bool((a != b).all())
    pairs = torch.bincount((a * 5 + b)[:, 0], minlength=25).reshape(5, 5) / 100_000
    assert pairs.diagonal().sum() == 0
    assert ((pairs + torch.eye(5) / 20) - 1 / 20).abs().max() < 0.006  # 20 ordered pairs uniform


def test_stream_answers_are_correct(two_epochs):
    texts = decode_rows(two_epochs[1].tokens()[1][:5000])
    for text in texts:
        assert text.split(":")[2] == expected_answer(text, 5), text


def test_tokens_equal_encode_of_the_same_texts(two_epochs):
    samples = two_epochs[0].select(torch.arange(3000))
    inputs, targets = samples.tokens()
    ref_inputs, ref_targets = encode(texts_from_fields(samples))
    assert torch.equal(inputs, ref_inputs) and torch.equal(targets, ref_targets)
    # all-short batches are narrower
    short = samples.select((samples.n_ops == 1).nonzero().squeeze(1)[:10])
    assert short.tokens()[0].shape == (10, 15)
    # parse is the inverse of building the text
    parsed = SwapBatch.parse(texts_from_fields(samples))
    assert torch.equal(parsed.tokens()[1], targets)


def test_batches_pad_per_batch_and_mask_answers(two_epochs):
    samples = two_epochs[0].select(torch.arange(2000))
    texts = texts_from_fields(samples)
    seen = []
    widths = set()
    for begin, (inputs, targets) in zip(range(0, 2000, 64), batches(samples, 64)):
        chunk = texts[begin : begin + 64]
        assert inputs.shape == targets.shape == (len(chunk), max(len(t) for t in chunk))
        widths.add(inputs.shape[1])
        ref_inputs, ref_targets = encode(chunk)
        assert torch.equal(inputs, ref_inputs) and torch.equal(targets, ref_targets)
        for row, text in enumerate(chunk):
            answer_start = text.rindex(":") + 1
            masked = (inputs[row] == MASK_TOKEN).nonzero().squeeze(1).tolist()
            assert masked == list(range(answer_start, len(text)))
            assert set(targets[row, len(text) :].tolist()) <= {PAD_TOKEN}
        seen.extend(decode_rows(targets))
    assert seen == texts
    assert len(seen) == 2000  # 31 full batches and one of 16
    # a batch of only short programs is cut to its own longest text
    short = samples.select(samples.n_ops.argsort()[:128])  # the 1-op samples first
    first_inputs, _ = next(iter(batches(short, 64)))
    assert first_inputs.shape == (64, 15)


def test_stream_is_seeded_per_seed_and_epoch():
    a = SwapStream(3).epoch(0, 5000)
    b = SwapStream(3).epoch(0, 5000)
    assert torch.equal(a.tokens()[1], b.tokens()[1])
    assert not torch.equal(SwapStream(4).epoch(0, 5000).tokens()[0][:, :15], a.tokens()[0][:, :15])
    assert not torch.equal(SwapStream(3).epoch(1, 5000).tokens()[0][:, :15], a.tokens()[0][:, :15])
    # an epoch does not depend on the epochs drawn before it
    stream = SwapStream(3)
    stream.epoch(5, 100)
    assert torch.equal(stream.epoch(0, 5000).letters, a.letters)


def test_stream_rejects_unsupported_settings():
    with pytest.raises(UserError, match="tensor training stream supports"):
        SwapStream(1, input_length=6)
    with pytest.raises(UserError, match="swaps"):
        SwapStream(1, num_operations=(1, 5))
