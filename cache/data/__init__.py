"""Task data: GLUE and users' own files, raw-text corpora, tokenisation, and the Hugging Face
model folders (config, tokenizer, task head) that read it."""
