"""All-points k nearest neighbours: the top-k core, the kernels and the Spark modes."""
