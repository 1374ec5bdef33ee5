"""Leads: fuses signals from every channel into one classified, explained lead per person."""
