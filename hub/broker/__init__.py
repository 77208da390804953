"""The broker the hub runs on: the embedded Tansu broker (embedded) and its journal (journal), and
keeping topics and consumers right when a broker comes back empty (topics, resets)."""
