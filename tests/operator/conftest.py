"""Fixtures for operator tests: a real Kubernetes API server (etcd + kube-apiserver) built by scripts/envtest.sh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flashsale.platform import envtest


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[envtest.ControlPlane]:
    """The envtest control plane with the Strimzi, Prometheus Operator and FlashSale CRDs, for the whole session."""
    with envtest.ControlPlane(tmp_path_factory.mktemp("envtest")) as plane:
        yield plane
