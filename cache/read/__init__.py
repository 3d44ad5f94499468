"""The read path: a cache opened for reading, its blocks decoded into padded targets, and
inspection (`cache info`, `verify`, `ls`)."""
