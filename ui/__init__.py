"""The desktop app (PyQt6): pick a robot, task and device, watch the cameras, record and browse episodes.

Nothing here is imported by the other packages; PyQt6 and pyqtgraph are needed only once the app starts
(`pip install 'teleop[gui]'`).
"""
