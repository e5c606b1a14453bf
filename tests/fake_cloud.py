"""Ray's fake multi-node provider, made to report a vanished node as a cloud does.

The fake provider lists every node it launched until the autoscaler terminates it, so a
node whose machine vanished (a spot reclaim, simulated by killing its raylet) stays
listed. Take a node whose trials had just given back their resources when it died, and
a request made before Ray marked it dead: the v1 autoscaler bin-packs the request onto
the listed node (Ray's last report showed it free), so it launches no replacement and
never removes the node as idle, and the sweep waits forever. That was a CI hang of the
lost-worker test, reproduced by test_a_killed_worker_with_free_resources_is_replaced. A
cloud's API reports such an instance as terminated, and so does this provider, for a
node whose raylet has died.

The autoscaler on the head imports it: ``provider: {type: external, module:
fake_cloud.VanishingNodeProvider}``, with this folder on the head's PYTHONPATH.
"""

from __future__ import annotations

from ray._private import ray_constants
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider


class VanishingNodeProvider(FakeMultiNodeProvider):
    def non_terminated_nodes(self, tag_filters):
        with self.lock:
            for node_id, entry in list(self._nodes.items()):
                node = entry.get("node")  # the head's entry has none: it is not ours to launch
                if node is not None and any(kind == ray_constants.PROCESS_TYPE_RAYLET
                                            for kind, _ in node.dead_processes()):
                    del self._nodes[node_id]
                    node.kill_all_processes(check_alive=False, allow_graceful=False)
        return super().non_terminated_nodes(tag_filters)
