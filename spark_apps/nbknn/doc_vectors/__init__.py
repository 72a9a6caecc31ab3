"""Document vectors: TF-IDF and a truncated SVD of labelled or unlabelled documents."""
