@echo off
rem Z-Image Studio (zaoxiang): double-click to install (runs install.ps1 without changing the system's script policy).
chcp 65001 >nul
powershell -NoProfile -ExecutionPolicy Bypass -File "%~dp0install.ps1" %*
pause
