"""The retry service: durable delayed jobs fired to their target topic when due."""
