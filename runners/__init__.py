"""vgpu-bench runners: plan, launch, measure, track and summarize workloads."""
