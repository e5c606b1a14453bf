"""attn_act: elu+1 versus dpfp as the feature map of parameter-free attention."""

from tune_selcopy.sweeps.spaces import Space

from ._common import PUBLISHED_FIXED

SPACE = Space(
    name="attn_act",
    description="parameter-free attention in the last layer, QK invented: elu+1 vs dpfp",
    grid={"qkv": ["QK"], "attn": [(0, 0, True)], "attnact": ["elu+1", "dpfp"]},
    seeds=5,
    fixed=PUBLISHED_FIXED,
)
