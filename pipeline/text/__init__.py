"""Text steps: the ontology model, phrase matching, concept/metadata extraction, truncation."""
