"""The teacher side: loading and running a teacher, the dump into a cache, the writer beside it,
students initialised from teacher layers, and data augmentation."""
