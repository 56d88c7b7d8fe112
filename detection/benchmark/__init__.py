"""Speed, size and cost of the detectors (``runner``) and their Markdown tables (``report``)."""
