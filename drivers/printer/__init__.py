# Receipt printers: the Printer contract (base.py), ESC/POS over python-escpos (escpos.py), a file twin (fake.py).
