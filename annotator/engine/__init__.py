"""Ring 2: prompt engines (SAM, LiteMedSAM, classical), embedding cache, executor; torch imported lazily."""
