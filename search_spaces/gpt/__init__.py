"""The elastic byte-level GPT decoder space and its weight-sharing supernet."""
