"""Raw exports onto the data contract: declarative mappings, the demo generator and the
Online Retail importer."""
