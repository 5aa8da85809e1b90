"""Failure injection: arming, planning and injecting chaos, behind a deliberate guard."""
