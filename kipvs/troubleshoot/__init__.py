"""What `kipvs show` and `kipvs doctor` are made of: read-only views that compare the cluster's wishes
with the kernel's facts and explain the difference (the commands in kipvs/commands wire and print them)."""
