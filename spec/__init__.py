"""The abstract spec: processes executing against ideal memory, paging invisible."""
