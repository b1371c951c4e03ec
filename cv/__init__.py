"""Pure image and ML code for handwriting: uint8 greyscale arrays in, float32 vectors and labels out; no DB, no HTTP, no I/O."""
