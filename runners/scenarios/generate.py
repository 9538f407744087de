"""`workload=generate`: decoder models, a prompt of seq_len tokens, then new_tokens decoded
one at a time (greedy, KV cache): time to first token, time per output token."""

from __future__ import annotations

from dataclasses import dataclass

from runners import stats
from runners.config import Compile, Sync, WorkloadConfig, _check
from runners.contracts import Metric
from runners.errors import UsageError
from runners.scenarios import Scenario, scenarios

TTFT_P50 = Metric("ttft_ms_p50", "ms", "time to first token (the prefill), median over generations")
TTFT_MEAN = Metric("ttft_ms_mean", "ms", "time to first token, mean")
TPOT_P50 = Metric("tpot_ms_p50", "ms", "time per output token after the first, median over generations")
TPOT_MEAN = Metric("tpot_ms_mean", "ms", "time per output token after the first, mean")
OUTPUT_TOKENS_PER_S = Metric("output_tokens_per_s", "tokens/s", "throughput x new_tokens")


@dataclass
class GenerateConfig(WorkloadConfig):
    new_tokens: int = 32  # tokens decoded after a prompt of seq_len tokens

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.new_tokens >= 1, f"workload.new_tokens must be >= 1, got {self.new_tokens}")


@scenarios.register
class Generate(Scenario):
    name = "generate"
    config_class = GenerateConfig
    summary = "prefill + token-by-token greedy decoding"

    def check(self, config, entry, backend):
        if config.workload.compile is not Compile.none:
            raise UsageError(
                "workload.compile is not supported with workload=generate (the decode loop changes shapes)"
            )
        if config.workload.sync is Sync.window:
            raise UsageError(
                "workload.sync=window does not apply to workload=generate: every generation synchronizes "
                "after its prefill (time to first token). Valid: workload.sync=step"
            )

    def extra_tokens(self, workload):
        return workload.new_tokens

    def build_step(self, framework, entry, workload, shape, seed):
        return framework.generate_step(entry, workload, shape, seed, workload.new_tokens)

    def derive(self, result, framework, workload, m):
        # The measured generations only: not the warm-up ones before, nor profiled ones after.
        measured = slice(m.warmup_steps, m.warmup_steps + m.steps)
        ttft, tpot = framework.ttft_ms[measured], framework.tpot_ms[measured]
        result.details["generations"] = {"measured": len(ttft), "ttft_ms": ttft, "tpot_ms": tpot}
        result.set(TTFT_P50, stats.percentile(ttft, 50))
        result.set(TTFT_MEAN, stats.summarize_ms(ttft)["mean"])
        if tpot:
            result.set(TPOT_P50, stats.percentile(tpot, 50))
            result.set(TPOT_MEAN, stats.summarize_ms(tpot)["mean"])
        result.set(OUTPUT_TOKENS_PER_S, result.value("throughput", 0.0) * workload.new_tokens)
