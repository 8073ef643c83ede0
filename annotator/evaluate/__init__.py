"""Click-simulation evaluation of a prompt engine on labelled scans (`annotator evaluate`)."""
