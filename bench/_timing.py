"""What a streamed workload measured (wall time, tokens, first-token and inter-token latencies) and its percentiles;
shared by bench/engine.py (in-process runs) and bench/servers.py (OpenAI-protocol servers)."""

from dataclasses import dataclass, field


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


@dataclass
class Run:
    wall: float = 0.0
    out_tokens: int = 0
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)

    def line(self, name: str) -> str:
        return (
            f"{name}: {self.out_tokens / self.wall:8.1f} out tok/s | TTFT p50 {pct(self.ttft, 50) * 1e3:7.0f} ms "
            f"p99 {pct(self.ttft, 99) * 1e3:7.0f} ms | ITL p50 {pct(self.itl, 50) * 1e3:6.1f} ms "
            f"p99 {pct(self.itl, 99) * 1e3:6.1f} ms | {self.out_tokens} tokens in {self.wall:.1f} s"
        )
