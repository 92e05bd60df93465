"""The capture pane and its parts: a ring buffer of frames, a filter, the Line API frame list, flows."""
