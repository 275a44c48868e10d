"""`genlab bench`: training speed (vs fp32, vs diffusers, vs the machine's peak) and quality per minute.

    from genlab.bench import SpeedConfig, run_speed, QualityConfig, run_quality, write_section
    result = run_speed(SpeedConfig())                   # numbers + result["markdown"]
    write_section("benchmarks/results.md", "speed", result["markdown"])

speed.py times one training step of the loop's paths and the samplers;
quality.py trains the default recipe for a time budget and scores it (FID vs floor);
noise.py scores samples over independent draws (FID mean ± SD, the floor over disjoint
draws) and turns a comparison into PASS / FAIL only beyond its noise;
precision.py measures what `precision auto` should pick here (`genlab bench --precision`).
"""

from .quality import QualityConfig, run_quality  # noqa: F401
from .speed import SpeedConfig, TrainStep, matmul_peak, quick_config, run_speed, step_flops, write_section  # noqa: F401
