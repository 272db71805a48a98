"""The re-cluster job: a full recompute of each trend clusterer's window on the cluster."""
