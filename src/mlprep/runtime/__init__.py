"""The runtime: what an image runs for every front end. It loads the user's pre_processing, applies it
(core), names what happens to each record (outcomes), reads inputs (codecs) and writes outputs
(serialization). It imports nothing above it."""
