"""Reading inputs: labelled documents, vectors, the tokeniser, and the quarantine of bad records."""
