"""Pure image and ML code: uint8 greyscale in, float32 vectors and labels out; no I/O."""
