"""Where does the suite's bf16 step lose time against a bare loop? One process, BERT-base
batch 32x128 bf16 autocast, inputs from host, outputs back, sync per step. Also start-up costs."""
import os, statistics, sys, time
T0 = time.perf_counter()
def log(*a): print(f"[{time.perf_counter()-T0:6.1f}s]", *a, flush=True)
import torch
log("import torch", torch.__version__)
import zoo
from zoo.base import InputShape
log("import zoo (+hook)")
import transformers
log("import transformers", transformers.__version__)
from runners.config import WorkloadConfig, Precision, Inputs
from runners.worker.frameworks import frameworks
from runners.worker import measure
from runners import nvml
dev = "cuda" if torch.cuda.is_available() else "cpu"
size = None if dev == "cuda" else "tiny"
BS = 32 if dev == "cuda" else 4
N = 40 if dev == "cuda" else 5
entry = zoo.get("bert")(size)
torch.manual_seed(0)
t = time.perf_counter(); m0 = entry.build(InputShape()); log(f"build {entry.size} on cpu: {time.perf_counter()-t:.2f}s threads={torch.get_num_threads()}")
sd = {k: v.clone() for k, v in m0.state_dict().items()}
torch.save(sd, "/tmp/sd.pt")
t = time.perf_counter(); sd2 = torch.load("/tmp/sd.pt"); log(f"torch.load state_dict: {time.perf_counter()-t:.2f}s")
with torch.device("meta"):
    t = time.perf_counter(); mm = entry.build(InputShape()); log(f"build on meta: {time.perf_counter()-t:.2f}s")
t = time.perf_counter(); mm = mm.to_empty(device="cpu"); mm.load_state_dict(sd2); log(f"meta->empty+load: {time.perf_counter()-t:.2f}s equal={all(torch.equal(a,b) for a,b in zip(mm.state_dict().values(), sd.values()))}")
if dev == "cuda":
    t = time.perf_counter(); torch.zeros(1, device="cuda"); torch.cuda.synchronize(); log(f"cuda context: {time.perf_counter()-t:.2f}s")
    with torch.device("cuda"):
        torch.manual_seed(0); t = time.perf_counter(); mc = entry.build(InputShape()); torch.cuda.synchronize(); log(f"build on cuda: {time.perf_counter()-t:.2f}s")
    del mc

def bench(label, fn, n=N, warm=5):
    for _ in range(warm): fn()
    if dev == "cuda": torch.cuda.synchronize()
    times = []
    for _ in range(n):
        t = time.perf_counter(); fn()
        if dev == "cuda": torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    log(f"{label}: p50 {statistics.median(times)*1e3:.2f} ms")

ac = lambda: torch.autocast(dev, dtype=torch.bfloat16)
# 1. the bare loop of the evidence, BertModel + mask
from transformers import BertConfig, BertModel
cfg = m0.config
bare = m0.bert.to(dev).eval()
ids = torch.randint(0, cfg.vocab_size, (BS, 128)); mask = torch.ones(BS, 128, dtype=torch.long)
def f1():
    with torch.inference_mode(), ac():
        bare(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state.cpu()
bench("1 bare BertModel+mask", f1)
def f1b():
    with torch.inference_mode(), ac():
        bare(input_ids=ids.to(dev)).last_hidden_state.cpu()
bench("1b bare BertModel no mask", f1b)
# 2. the suite's model and batch, bare loop
sm = m0.to(dev).eval()
batch = entry.make_batch(BS, InputShape(), 0)
def f2():
    with torch.inference_mode(), ac():
        entry.forward(sm, {k: v.to(dev) for k, v in batch.items()}).cpu()
bench("2 bare loop, suite model+batch", f2)
def f2b():
    with torch.inference_mode(), ac():
        entry.forward(sm, {"input_ids": batch["input_ids"].to(dev)}).cpu()
bench("2b same, ids only", f2b)
print("attn impl:", getattr(sm.config, "_attn_implementation", None), file=sys.stderr)
del sm
# 3. the suite's own step, bare loop
fw = frameworks.get("pytorch")(dev, "bf16", None, "graph", "none", None)
fw.init_device()
wl = WorkloadConfig(kind="infer", batch_size=BS, precision=Precision.bf16, inputs=Inputs.host)
step = fw.infer_step(entry, wl, InputShape(), 0)
log("suite model built (build+to)")
bench("3 suite step, bare loop", step)
# 4. measure.run with events
def mrun(label, sampler=False, timer=True, energy=False):
    s = nvml.MemorySampler() if sampler and dev == "cuda" else None
    e = nvml.EnergyMeter() if energy and dev == "cuda" else None
    if s: s.__enter__()
    if e: e.start()
    m = measure.run(step, fw.synchronize, warmup_steps=5, min_steps=N, min_duration_s=0, max_duration_s=60,
                    timer=fw.step_timer() if timer else None)
    if e: e.stop()
    if s: s.__exit__(None, None, None)
    dv = statistics.median(m.device_times_ms) if m.device_times_ms else float("nan")
    log(f"{label}: p50 {statistics.median(m.step_times_ms):.2f} ms, device p50 {dv:.2f} ms")
mrun("4 measure.run, no timer", timer=False)
mrun("5 measure.run + events")
mrun("6 measure.run + events + sampler", sampler=True)
mrun("7 measure.run + events + sampler + energy", sampler=True, energy=True)
mrun("8 measure.run, no timer, sampler", sampler=True, timer=False)
bench("3' suite step, bare loop again", step)
