"""nbgrader's configuration for the course: copy it into your course directory (the folder that
holds source/, release/, submitted/ and autograded/) and run nbgrader there.

    source/<assignment>/exNN_....ipynb          # copies of solutions/ (the single source)
    nbgrader generate_assignment <assignment>   # release/<assignment>/: stubs, hints kept
    nbgrader autograde <assignment>             # submitted/<student>/<assignment>/ -> autograded/
    nbgrader export                             # grades.csv, one row per student and assignment
    nbgrader validate release/<assignment>/*.ipynb   # what a student runs before submitting

The course's own grader (`python -m mha_course grade`) gives the same points on the same
submissions (tests/test_nbgrader.py runs both on a perfect, a blank and a broken student): nbgrader
awards a graded cell its points when the cell (the public self-check) runs without an error; the
course's grader runs hidden inputs outside the student's kernel. Run nbgrader in the environment
where the course is installed (`make lab`): the notebooks import mha_course.
"""

c = get_config()  # noqa: F821 (nbgrader's config loader defines get_config)

c.CourseDirectory.course_id = "mha-course"

# Solutions are stored without run timestamps (cell metadata "execution"); should one carry them
# anyway, the release drops them with the outputs.
c.ClearOutput.remove_metadata_fields = ["collapsed", "scrolled", "execution"]

# The notebooks import torch and the course's checks; a slow machine needs more than nbgrader's 30 s
# per cell.
c.Execute.timeout = 300
