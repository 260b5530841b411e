//! mesh-sim: simulated Kubernetes clusters (under construction).
