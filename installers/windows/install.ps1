# 造相 Z-Image Studio - Windows installer.
# Double-click install.bat (or: powershell -ExecutionPolicy Bypass -File install.ps1).
# It creates a virtual environment under %LOCALAPPDATA%\zaoxiang-studio, installs PyTorch for this
# machine (the CUDA build when nvidia-smi answers, else the CPU build) and the studio, and adds
# "造相 Z-Image Studio" shortcuts to the Start menu and the desktop. The shortcuts start the studio
# through zaoxiang.vbs, so no console window appears. Your images are never touched by uninstall.
#   -Cpu              install the CPU build of PyTorch even with a GPU
#   -NoDesktopIcon    only the Start menu shortcut
# Environment: ZAOXIANG_TORCH_SPEC (default torch), ZAOXIANG_TORCH_INDEX (wheel index, empty: pip's
# own), ZAOXIANG_PIP_OPTIONS (extra pip options), ZAOXIANG_PREFIX (install folder).
param(
    [switch]$Cpu,
    [switch]$NoDesktopIcon
)
$ErrorActionPreference = 'Stop'

function Fail([string]$Message) {
    Write-Host "install: $Message" -ForegroundColor Red
    exit 1
}

$Src = (Resolve-Path (Join-Path $PSScriptRoot '..\..')).Path
if (-not (Test-Path (Join-Path $Src 'pyproject.toml'))) { Fail "run me from inside the studio's folder" }
$Prefix = if ($env:ZAOXIANG_PREFIX) { $env:ZAOXIANG_PREFIX } else { Join-Path $env:LOCALAPPDATA 'zaoxiang-studio' }
$Venv = Join-Path $Prefix 'venv'
$VenvPython = Join-Path $Venv 'Scripts\python.exe'

# 1. Python 3.10 or newer: the py launcher first, then python on PATH.
$Python = $null
foreach ($candidate in @(@('py', '-3'), @('python'))) {
    $exe = $candidate[0]
    $rest = @($candidate | Select-Object -Skip 1)
    if (Get-Command $exe -ErrorAction SilentlyContinue) {
        & $exe @rest -c "import sys; sys.exit(sys.version_info < (3, 10))" 2>$null
        if ($LASTEXITCODE -eq 0) { $Python = $candidate; break }
    }
}
if (-not $Python) { Fail "Python 3.10 or newer is needed: install it from https://www.python.org (tick 'Add to PATH') and run me again" }
$PyExe = $Python[0]
$PyArgs = @($Python | Select-Object -Skip 1)

Write-Host "造相 Z-Image Studio: installing into $Prefix"
New-Item -ItemType Directory -Force -Path $Prefix | Out-Null
if (-not (Test-Path $VenvPython)) {
    & $PyExe @PyArgs -m venv $Venv
    if ($LASTEXITCODE -ne 0) { Fail "could not create the virtual environment" }
}
$PipOptions = @()
if ($env:ZAOXIANG_PIP_OPTIONS) { $PipOptions = $env:ZAOXIANG_PIP_OPTIONS -split '\s+' | Where-Object { $_ } }
function Pip-Install([string[]]$PackageArgs) {
    & $VenvPython -m pip install --disable-pip-version-check @PipOptions @PackageArgs
    if ($LASTEXITCODE -ne 0) { Fail "pip install $($PackageArgs -join ' ') failed" }
}

# 2. PyTorch for this machine.
$TorchSpec = if ($env:ZAOXIANG_TORCH_SPEC) { $env:ZAOXIANG_TORCH_SPEC } else { 'torch' }
if (Test-Path env:ZAOXIANG_TORCH_INDEX) {
    $TorchIndex = $env:ZAOXIANG_TORCH_INDEX
} elseif (-not $Cpu -and (Get-Command nvidia-smi -ErrorAction SilentlyContinue)) {
    $smi = (& nvidia-smi) -join "`n"
    $cuda = 126
    if ($smi -match 'CUDA Version:\s*(\d+)\.(\d+)') { $cuda = [int]($Matches[1] + $Matches[2]) }
    $tag = if ($cuda -ge 130) { 'cu130' } elseif ($cuda -ge 128) { 'cu128' } else { 'cu126' }
    $TorchIndex = "https://download.pytorch.org/whl/$tag"
    Write-Host "NVIDIA driver found (CUDA $cuda): installing the $tag build of PyTorch"
} else {
    $TorchIndex = 'https://download.pytorch.org/whl/cpu'
    Write-Host 'No NVIDIA GPU found: installing the CPU build of PyTorch'
}
& $VenvPython -c "import torch" 2>$null
if ($LASTEXITCODE -ne 0) {
    if ($TorchIndex) { Pip-Install @('--index-url', $TorchIndex, $TorchSpec) } else { Pip-Install @($TorchSpec) }
}

# 3. The studio (a normal install: this folder may be moved or deleted afterwards).
# setuptools would copy a stale build\lib into the wheel (modules moved away since would come back)
Remove-Item -Recurse -Force -ErrorAction SilentlyContinue (Join-Path $Src 'build')
Pip-Install @($Src)

# 4. The no-console launcher, the icon, the uninstaller and the shortcuts.
Copy-Item (Join-Path $Src 'installers\windows\zaoxiang.vbs') (Join-Path $Prefix 'zaoxiang.vbs') -Force
Copy-Item (Join-Path $Src 'installers\windows\uninstall.ps1') (Join-Path $Prefix 'uninstall.ps1') -Force
Copy-Item (Join-Path $Src 'installers\windows\uninstall.bat') (Join-Path $Prefix 'uninstall.bat') -Force
Copy-Item (Join-Path $Src 'assets\icon.ico') (Join-Path $Prefix 'icon.ico') -Force

$Shell = New-Object -ComObject WScript.Shell
$Links = @((Join-Path ([Environment]::GetFolderPath('Programs')) '造相 Z-Image Studio.lnk'))
if (-not $NoDesktopIcon) { $Links += (Join-Path ([Environment]::GetFolderPath('Desktop')) '造相 Z-Image Studio.lnk') }
foreach ($link in $Links) {
    $shortcut = $Shell.CreateShortcut($link)
    $shortcut.TargetPath = Join-Path $env:WINDIR 'System32\wscript.exe'
    $shortcut.Arguments = '"' + (Join-Path $Prefix 'zaoxiang.vbs') + '"'
    $shortcut.WorkingDirectory = $Prefix
    $shortcut.IconLocation = (Join-Path $Prefix 'icon.ico') + ',0'
    $shortcut.Description = '造相 Z-Image Studio'
    $shortcut.Save()
}
Set-Content -Path (Join-Path $Prefix 'installed-files.txt') -Value $Links -Encoding UTF8

Write-Host ''
Write-Host 'Installed. Double-click "造相 Z-Image Studio" on the desktop or in the Start menu.'
Write-Host '安装完成。双击桌面或开始菜单中的「造相 Z-Image Studio」即可启动。'
Write-Host "Uninstall: double-click $Prefix\uninstall.bat (keeps your images)."
