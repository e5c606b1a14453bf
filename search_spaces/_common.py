"""Settings shared by the published sweeps (docs/science.md, "The two published sweeps")."""

from typing import Any

# Fixed in both published sweeps: l=3, ch=64, ks=13, dil=[3,5,1], act=gelu, nitem=26,
# len=5, nops=[1,3], vnops=3, bs=64, AdamW lr=5e-4, 1,000,000 inputs.
PUBLISHED_FIXED: dict[str, Any] = {
    "num_layers": 3,
    "channels": 64,
    "kernel_size": 13,
    "dilation": (3, 5, 1),
    "activation": "gelu",
    "num_items": 26,
    "input_length": 5,
    "num_operations": (1, 3),
    "val_num_operations": 3,
    "batch_size": 64,
    "lr": 5e-4,
    "max_inputs": 1_000_000,
}
