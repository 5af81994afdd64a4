"""Training and evaluation for handseg models; they call the handseg package, never the reverse."""
