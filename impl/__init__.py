"""The reference kernel: demand paging over the hardware model."""
