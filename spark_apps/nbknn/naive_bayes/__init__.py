"""Naive Bayes: class priors and term counts, the sharded model, shard passes and the combiner."""
