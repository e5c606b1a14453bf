"""attn_invent: who invents the queries, keys and values (conv) and which attention."""

from tune_selcopy.sweeps.spaces import Space

from ._common import PUBLISHED_FIXED

SPACE = Space(
    name="attn_invent",
    description="attention in the last layer (T or 1/4/8 heads) x invented q/k/v",
    grid={
        "attn": [(0, 0, True), (0, 0, 1), (0, 0, 4), (0, 0, 8)],
        "qkv": ["QK", "QV", "KV", "QKV"],
        "attnact": ["elu+1"],
    },
    seeds=10,
    fixed=PUBLISHED_FIXED,
)
