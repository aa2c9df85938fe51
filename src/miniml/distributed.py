"""Data-parallel fitting over several devices with JAX's own sharding.

``fit(..., devices=...)`` lays the samples out along a one-dimensional device mesh
(axis ``"data"``). The data are padded to a multiple of the number of devices and
evaluated through the masked, chunked objective of `miniml._chunked`, with the row
axis of each chunk sharded, so XLA computes each device's rows where they live and
reduces the objective, gradient and Hessian-vector products with collectives. The
parameters are replicated. The same works across processes once
``jax.distributed.initialize(...)`` has made the other hosts' devices visible (see the
"Scale" page of the documentation for the launch recipe).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from miniml.errors import MiniMLError

__all__ = [
    "DATA_AXIS",
    "check_equal_local_samples",
    "check_shardable_samples",
    "local_device_count",
    "padded_member_count",
    "resolve_mesh",
    "shard_members",
    "shard_rows",
    "shard_samples",
]

DATA_AXIS = "data"


def resolve_mesh(devices: Any, where: str) -> Mesh | None:
    """``devices`` as a 1-D mesh: None, a count, a list of devices, or a `Mesh`."""
    if devices is None:
        return None
    if isinstance(devices, Mesh):
        if DATA_AXIS not in devices.axis_names or len(devices.axis_names) != 1:
            raise MiniMLError(
                f"{where}: a Mesh for data-parallel fitting must have exactly one axis named "
                f"{DATA_AXIS!r}, got axes {devices.axis_names}; e.g. jax.sharding.Mesh("
                f"np.array(jax.devices()), ({DATA_AXIS!r},)), or pass a device count."
            )
        return devices
    available = jax.devices()
    if isinstance(devices, int | np.integer) and not isinstance(devices, bool):
        if devices < 1:
            raise MiniMLError(
                f"{where}: devices must be >= 1, got {devices}; pass e.g. devices="
                f"{len(available)} for all {len(available)} available device(s), or None "
                "for a single-device fit."
            )
        if devices > len(available):
            raise MiniMLError(
                f"{where}: devices={devices} but {len(available)} device(s) are available "
                f"({available[0].platform}). On a CPU, set XLA_FLAGS="
                "--xla_force_host_platform_device_count=N before importing jax to get N."
            )
        chosen: Sequence[Any] = available[: int(devices)]
    elif isinstance(devices, list | tuple) and devices:
        chosen = list(devices)
        for position, device in enumerate(chosen):
            if not isinstance(device, jax.Device):
                raise MiniMLError(
                    f"{where}: devices must be jax devices (jax.devices()), got {device!r} "
                    f"at position {position} of {devices!r}; pass e.g. devices=jax.devices()"
                    "[:2], or a device count such as devices=2."
                )
        if len(set(chosen)) != len(chosen):
            twice = next(d for d in chosen if chosen.count(d) > 1)
            raise MiniMLError(
                f"{where}: devices lists device {twice} more than once ({devices!r}); each "
                "device holds one shard, so list distinct devices, e.g. devices="
                "jax.devices()[:2]."
            )
    else:
        raise MiniMLError(
            f"{where}: devices must be None, a device count, a list of jax devices or a "
            f"jax.sharding.Mesh with axis {DATA_AXIS!r}; got {devices!r}."
        )
    return Mesh(np.array(chosen), (DATA_AXIS,))


def local_device_count(mesh: Mesh) -> int:
    """How many of the mesh's devices belong to this process."""
    return sum(1 for d in mesh.devices.flat if d.process_index == jax.process_index())


def check_equal_local_samples(n_local: int, where: str) -> None:
    """In a multi-process fit every process must hold the same number of samples."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    counts = np.asarray(multihost_utils.process_allgather(np.asarray(n_local))).ravel()
    if len(set(counts.tolist())) != 1:
        raise MiniMLError(
            f"{where}: in a multi-process fit every process must pass the same number of "
            f"samples; the processes hold {counts.tolist()}. Split the data evenly."
        )


def shard_rows(chunked: Any, mesh: Mesh) -> Any:
    """Place chunked data ``(n_chunks, rows, ...)`` with the row axis over the mesh.

    With several processes each passes its own rows, and the global array is their
    concatenation along the row axis.
    """
    sharding = NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))
    if jax.process_count() == 1:
        return jax.tree.map(lambda leaf: jax.device_put(leaf, sharding), chunked)
    return jax.tree.map(
        lambda leaf: jax.make_array_from_process_local_data(sharding, np.asarray(leaf)), chunked
    )


def check_shardable_samples(n_samples: int, mesh: Mesh, where: str) -> None:
    """Mini-batch training on a mesh: one process, samples split evenly (no padding:
    a padded row could be drawn into a batch)."""
    n_devices = mesh.devices.size
    if jax.process_count() > 1:
        raise MiniMLError(
            f"{where}: mini-batch training with devices= runs in one process; with "
            "jax.distributed use a full-batch optimizer (LBFGS or a SciPy method)."
        )
    if n_samples % n_devices:
        raise MiniMLError(
            f"{where}: mini-batch training on {n_devices} devices needs a number of samples "
            f"divisible by {n_devices}, got {n_samples}; drop {n_samples % n_devices} "
            "sample(s) or use a device count that divides it."
        )


def shard_samples(data: Any, n_samples: int, mesh: Mesh, where: str) -> Any:
    """Place unchunked data ``(n, ...)`` with the sample axis over the mesh.

    For mini-batch training: every step gathers its batch from the sharded rows, and
    XLA partitions the step's work over the devices (see `check_shardable_samples`).
    """
    check_shardable_samples(n_samples, mesh, where)
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return jax.tree.map(lambda leaf: jax.device_put(leaf, sharding), data)


def padded_member_count(n_members: int, mesh: Mesh, where: str) -> int:
    """A batch's member count rounded up to a multiple of the mesh's devices
    (`shard_members` fills the gap with copies of member 0)."""
    if jax.process_count() > 1:
        raise MiniMLError(
            f"{where}: a batched fit with devices= runs in one process (its members are "
            "laid out over this process's devices); with jax.distributed, fit each "
            "process's members in its own fit_batched call."
        )
    n_devices = mesh.devices.size
    return -(-n_members // n_devices) * n_devices


def shard_members(tree: Any, axes: Any, n_padded: int, mesh: Mesh) -> Any:
    """Lay a batch's inputs out over ``mesh``: each leaf with a member axis (``axes``: 0
    or None, a prefix of ``tree`` as for `jax.vmap`) padded to ``n_padded`` members with
    copies of member 0 and split along its first axis; the other leaves replicated.

    Members are independent, so each device runs its own members' loops and the only
    communication is the batch's "is any member still running" after each iteration.
    """
    split = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(axis: int | None, subtree: Any) -> Any:
        sharding = replicated if axis is None else split
        return jax.tree.map(lambda leaf: jax.device_put(leaf, sharding), subtree)

    padded = pad_members(tree, axes, n_padded)
    return jax.tree.map(place, axes, padded, is_leaf=lambda node: node is None)


def pad_members(tree: Any, axes: Any, n_padded: int) -> Any:
    """``tree`` with each leaf that has a member axis (``axes``: 0 or None, a prefix of
    ``tree`` as for `jax.vmap`) padded to ``n_padded`` members with copies of member 0."""

    def padded(axis: int | None, subtree: Any) -> Any:
        def pad(leaf: Any) -> Any:
            gap = n_padded - leaf.shape[0]
            if not gap:
                return leaf
            xp = np if isinstance(leaf, np.ndarray) else jax.numpy
            return xp.concatenate([leaf, xp.repeat(leaf[:1], gap, axis=0)])

        return subtree if axis is None else jax.tree.map(pad, subtree)

    return jax.tree.map(padded, axes, tree, is_leaf=lambda node: node is None)
