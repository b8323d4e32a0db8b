"""The seat agent: the runtime that reads a rep's phone devices, records, pops and exports metrics."""
