"""Which Ray cluster a sweep runs on, and whether a trial fits there.

A sweep joins the cluster at ``--address`` (or ``RAY_ADDRESS``, set inside ``ray job
submit``), else starts an embedded Ray on this machine, bound to loopback. What can be
checked before Ray starts is: the address answers; an embedded Ray's resources hold one
trial. A joined cluster's resources are checked once joined (Ray itself would leave an
infeasible trial pending forever).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import urllib.parse

from tune_selcopy.errors import UserError, one_line

ADDRESS_TIMEOUT_S = 5.0


def cluster_address(address: str | None) -> str | None:
    """The cluster to join: ``--address``, else ``RAY_ADDRESS`` (set inside ``ray job submit``)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_address(address: str) -> None:
    """Fail fast on a cluster address that cannot be reached; ``ray.init`` would retry for minutes.

    Accepts ``host:port``, ``ray://host:port`` and ``auto`` (Ray's own lookup, not checked).
    """
    if address == "auto":
        return
    parsed = urllib.parse.urlsplit(address if "://" in address else f"gcs://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise UserError(f"--address {address!r}: expected host:port, ray://host:port or auto")
    try:
        with socket.create_connection((host, port), timeout=ADDRESS_TIMEOUT_S):
            pass
    except socket.gaierror as exc:
        raise UserError(f"cannot reach Ray cluster at {address}: unknown host {host!r} ({exc.strerror})") from None
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(
            f"cannot reach Ray cluster at {address}: {reason} within {ADDRESS_TIMEOUT_S:g} s "
            "(is the head running? is the address its GCS port, e.g. 6379?)"
        ) from None


def embedded_node(local_cpus: int | None, local_gpus: float | None) -> dict[str, float]:
    """The resources an embedded Ray declares: this machine's, or --local-cpus/--local-gpus."""
    import torch

    gpus = torch.cuda.device_count() if local_gpus is None else local_gpus
    return {"CPU": float(local_cpus or os.cpu_count() or 1), "GPU": float(gpus)}


def connect(address: str | None, node: dict[str, float] | None, dashboard: bool = False) -> str:
    """Join the cluster at ``address``, else start an embedded one declaring ``node`` (with
    its dashboard on loopback if ``dashboard``); say which, and where the dashboard is."""
    if address:
        import ray

        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:  # reachable, but not a Ray head
            raise UserError(f"cannot join Ray cluster at {address}: {one_line(exc, 300)}") from None
        return f"joined Ray cluster at {address}"
    # A local run need not be reachable from the network: Ray binds every server to its
    # node IP, which is loopback only when Ray's "cluster mode" is off (as it is on
    # laptops). Read by ray's constants at import, so set before the first import.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    try:
        context = ray.init(
            address="local",  # never attach to a `ray start` cluster found on this machine
            num_cpus=int(node["CPU"]),
            num_gpus=node["GPU"],
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    except Exception as exc:  # noqa: BLE001 - e.g. "timed out during startup" on an overloaded machine
        raise UserError(f"could not start an embedded Ray: {one_line(exc, 300)}") from None
    started = f"started an embedded local Ray with {node['CPU']:g} CPUs and {node['GPU']:g} GPUs (loopback only)"
    return f"{started}\n{dashboard_line(context.dashboard_url)}" if dashboard else started


def check_dashboard(address: str | None) -> None:
    """``--dashboard`` needs an embedded Ray and Ray's dashboard packages (``ray[default]``)."""
    if address:
        raise UserError("--dashboard starts the embedded Ray's dashboard; a cluster has its own (`ray dashboard` "
                        "opens it, see cluster/README.md)")
    from ray._private.utils import get_dashboard_dependency_error

    if (missing := get_dashboard_dependency_error()) is not None:
        raise UserError(f"--dashboard needs Ray's dashboard packages ({one_line(missing, 200)}): "
                        "pip install 'tune_selcopy[cluster]' (ray[default])")


def dashboard_line(host_port: str) -> str:
    """Where the embedded Ray's dashboard answers, and what it asks for (its own answer)."""
    import json
    import urllib.request

    if not host_port:
        return "dashboard: Ray did not start it (its log: /tmp/ray/session_latest/logs/dashboard.log)"
    url = f"http://{host_port}"
    try:
        with urllib.request.urlopen(f"{url}/api/authentication_mode", timeout=10) as answer:
            mode = json.load(answer).get("authentication_mode")
    except OSError as exc:
        return f"dashboard: {url} did not answer ({one_line(exc, 200)})"
    token = "; it asks for the token that `ray get-auth-token` prints" if mode == "token" else ""
    return f"dashboard: {url} (loopback only{token})"


def trial_resources(cpus: float | None, gpus: float | None, cluster_has_gpu: bool) -> tuple[float, float]:
    """CPU machines: one trial per core; GPU clusters: four trials per GPU, one core each."""
    return (1.0 if cpus is None else cpus, (0.25 if cluster_has_gpu else 0.0) if gpus is None else gpus)


def _describe(resources: dict[str, float]) -> str:
    """``CPU 2, GPU 1``: the resources a trial asks for or a node has."""
    return ", ".join(f"{key} {resources.get(key, 0):g}" for key in ("CPU", "GPU"))


def require_fit(cpus: float, gpus: float, nodes: list[dict[str, float]]) -> None:
    """``UserError`` unless one of ``nodes`` (resource dicts) can hold a trial asking ``cpus``, ``gpus``."""
    request = {"CPU": cpus, "GPU": gpus}
    if not any(all(node.get(key, 0) >= value for key, value in request.items()) for node in nodes):
        raise UserError(
            f"no node can run a trial asking {_describe(request)}: the nodes have "
            f"{'; '.join(map(_describe, nodes))}; lower --cpus-per-trial/--gpus-per-trial, or on an autoscaling "
            "cluster pass --wait-for-nodes SECONDS"
        )


def check_feasible(cpus: float, gpus: float, wait_s: float) -> None:
    """Fail fast when no live node can ever hold one trial; Ray itself would wait forever.

    With ``wait_s`` (autoscaling clusters) the request is handed to the autoscaler and the
    check waits for a node that fits.
    """
    import ray
    from ray.autoscaler.sdk import request_resources

    def live_nodes() -> list[dict[str, float]]:
        return [node["Resources"] for node in ray.nodes() if node.get("Alive")]

    deadline = time.monotonic() + wait_s
    if wait_s > 0:
        request_resources(bundles=[{"CPU": cpus, **({"GPU": gpus} if gpus else {})}])
    try:
        while True:
            try:
                return require_fit(cpus, gpus, live_nodes())
            except UserError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(2)
    finally:
        if wait_s > 0:
            request_resources(bundles=[])  # from here on Tune's own demand drives scaling
