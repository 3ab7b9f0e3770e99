"""What app.py wires: per-tab handlers, input parsing, formatting and the Show-o set. Built on the omnimamba
package; omnimamba never imports it."""
