"""rank.engine: which sweep engine a sweep runs with."""


def test_a_ray_engine_becomes_a_sweep_engine_with_its_settings_without_importing_ray():
    import subprocess
    import sys

    code = (
        "import sys; from riskrank.index.ray_engine.engine import RayEngine; "
        "from riskrank.rank.engine import resolve_sweep_engine; "
        "e = resolve_sweep_engine(RayEngine(num_shards=5, max_retries=1)); "
        "print(type(e).__name__, e.num_shards, e.max_retries, 'ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["RaySweepEngine", "5", "1", "False"]
