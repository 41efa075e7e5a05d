"""How a study finds its Ray: --address, else $RAY_ADDRESS (what `ray job submit` sets), else a new local
Ray; --dashboard only starts a dashboard with a local Ray (no Ray is started here)."""

from harness.tune.tuner import ray_init_kwargs


def test_address_flag_then_ray_address_then_local():
    assert ray_init_kwargs(None, env={})["address"] == "local"
    assert ray_init_kwargs(None, env={"RAY_ADDRESS": "10.0.0.1:6379"})["address"] == "10.0.0.1:6379"
    assert ray_init_kwargs("auto", env={"RAY_ADDRESS": "10.0.0.1:6379"})["address"] == "auto", "the flag wins"
    assert ray_init_kwargs("ray://head:10001", env={})["address"] == "ray://head:10001"


def test_dashboard_only_with_a_local_ray():
    assert ray_init_kwargs(None, env={})["include_dashboard"] is False, "off unless asked"
    assert ray_init_kwargs(None, dashboard=True, env={})["include_dashboard"] is True
    joined = ray_init_kwargs(None, dashboard=True, env={"RAY_ADDRESS": "auto"})
    assert "include_dashboard" not in joined, "a running cluster has its own dashboard"


def test_test_overrides_apply_last():
    kwargs = ray_init_kwargs(None, env={}, ray_init={"num_cpus": 2, "log_to_driver": False})
    assert kwargs["num_cpus"] == 2 and kwargs["log_to_driver"] is False and kwargs["address"] == "local"
